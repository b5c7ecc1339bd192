import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # train/ (works without `pip install -e train`)

torch.set_num_threads(int(os.environ.get("FREE_TEST_THREADS", "2")))
torch.set_flush_denormal(True)

TRAIN_DIR = os.path.dirname(HERE)


def torchrun(module: str, nproc: int, argv: list[str]) -> str:
    """python -m MODULE under torchrun (gloo, one thread per rank); its output, or a failed
    assertion with the tail of both streams."""
    import subprocess
    env = {**os.environ, "PYTHONPATH": TRAIN_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", module, *argv]
    r = subprocess.run(cmd, env=env, cwd=TRAIN_DIR, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr

EN_FIXTURE = """Package: alpha
Description-md5: {m1}
Description-en: Tool to frobnicate widgets
 Alpha frobnicates widgets quickly. It is written
 in C and uses little memory.
 .
 Features:
  * fast frobnication
  * small footprint which is very
    useful on embedded systems
 .
 This package contains the command-line tool.

Package: alpha-doc
Description-md5: {m2}
Description-en: Tool to frobnicate widgets (documentation)
 Alpha frobnicates widgets quickly. It is written
 in C and uses little memory.
 .
 Features:
  * fast frobnication
  * small footprint which is very
    useful on embedded systems
 .
 This package contains the command-line tool.

Package: beta
Description-md5: {m3}
Description-en: Library for reading beta files
 Beta reads beta files.
 .
 This package contains the shared library.

Package: gamma
Description-md5: {m4}
Description-en: Transitional dummy package

"""

FR_FIXTURE = """Package: alpha
Description-md5: {m1}
Description-fr: outil pour frobniquer des widgets
 Alpha frobnique des widgets rapidement. Il est écrit
 en C et utilise peu de mémoire.
 .
 Fonctionnalités :
  * frobnication rapide
  * faible empreinte
 .
 Ce paquet contient l'outil en ligne de commande.

Package: beta
Description-md5: {m3}
Description-fr: bibliothèque pour lire les fichiers beta
 Beta lit les fichiers beta.

Package: orphan
Description-md5: {m5}
Description-fr: pas d'anglais

"""

MD5S = {f"m{i}": f"{i:032x}" for i in range(1, 6)}


@pytest.fixture
def translation_files(tmp_path):
    en = tmp_path / "x_i18n_Translation-en"
    fr = tmp_path / "x_i18n_Translation-fr"
    en.write_text(EN_FIXTURE.format(**MD5S))
    fr.write_text(FR_FIXTURE.format(**MD5S))
    return str(en), str(fr)


def synthetic_rows(n, seed=0):
    """Small two-task data with learnable structure (for tokenizer/trainer tests)."""
    import random
    rng = random.Random(seed)
    words = ["library", "tool", "file", "network", "server", "client", "data", "image", "audio",
             "python", "module", "game", "editor", "font", "driver", "shared", "documentation"]
    fr = {"library": "bibliothèque", "tool": "outil", "file": "fichier", "network": "réseau",
          "server": "serveur", "client": "client", "data": "données", "image": "image",
          "audio": "audio", "python": "python", "module": "module", "game": "jeu",
          "editor": "éditeur", "font": "police", "driver": "pilote", "shared": "partagé",
          "documentation": "documentation"}
    rows = []
    for i in range(n):
        ws = rng.sample(words, 3)
        if i % 2 == 0:
            src = f"This package provides a {ws[0]} for {ws[1]} and {ws[2]} work. It is small and fast."
            rows.append({"id": f"s{i}", "task": "summarize", "source": src, "target": f"{ws[0]} for {ws[1]}"})
        else:
            rows.append({"id": f"t{i}", "task": "translate", "source": " ".join(ws),
                         "target": " ".join(fr[w] for w in ws)})
    return rows
