"""A tiny random BERT folder in the Hugging Face format: a stand-in for all-MiniLM-L6-v2 in fast tests."""

import torch

from tests.toy_world import BASE, NOVEL

_TEXTS = [*BASE, *NOVEL, "a video of a person", "a person does motion", "sit down"]
WORDS = sorted({w for text in _TEXTS for w in text.split()})


def make_tiny_bert(folder, hidden=32, layers=2):
    """Write ``config.json`` + ``model.safetensors`` + a WordPiece tokenizer (the toy world's words) to ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
