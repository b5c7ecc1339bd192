"""free_train: data, tokenizer, FREE trainer and exporter for the free-wasm demo model."""

TASK_PREFIXES = {
    "summarize": "summarize: ",
    "translate": "translate English to French: ",
}

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"

__version__ = "0.1.0"
