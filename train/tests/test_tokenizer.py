from tokenizers import Tokenizer

from free_train import EOS_ID, PAD_ID, TASK_PREFIXES, UNK_ID
from free_train.tokenizer import train_tokenizer, training_texts

from conftest import synthetic_rows


def test_specials_and_eos(tmp_path):
    rows = synthetic_rows(400)
    tok = train_tokenizer(training_texts(rows), 200)
    assert tok.token_to_id("<pad>") == PAD_ID
    assert tok.token_to_id("</s>") == EOS_ID
    assert tok.token_to_id("<unk>") == UNK_ID
    assert tok.get_vocab_size() <= 200
    enc = tok.encode(TASK_PREFIXES["translate"] + "network server")
    assert enc.ids[-1] == EOS_ID and enc.ids.count(EOS_ID) == 1
    assert tok.decode(enc.ids) == "translate English to French: network server"
    # round trip through the saved JSON, NFKC applied (the ligature "ﬁ" becomes "fi")
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    tok2 = Tokenizer.from_file(str(path))
    assert tok2.encode("ﬁle").ids == tok2.encode("file").ids
    assert tok2.decode(tok2.encode("données partagé").ids) == "données partagé"
    snow = tok2.encode("☃")  # a character never seen in training
    assert UNK_ID in snow.ids and snow.ids[-1] == EOS_ID
