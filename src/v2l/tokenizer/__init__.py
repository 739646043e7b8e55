"""The V2L tokenizer (paper §3.2): an image becomes K_g global tokens (words of the expanded LLM vocabulary that say
what it shows) and a grid of local tokens (LLM token ids that encode how it looks), and the local grid decodes back.

`ImageTokenizer` is the user-facing object (`from_pretrained("cpu")`, `tokenize`, `decode`, `reconstruct`);
`image_words` is the semantic interpretation of Fig. 6; `V2LTokenizer` is the trainable network.
"""

from .config import TOKENIZER_PRESETS, TokenizerConfig, get_config
from .image_tokenizer import (
    ImageTokenizer,
    TokenizedImage,
    local_codebook_for,
    local_exclusion,
    local_tokens_for,
    save_tokenizer_folder,
)
from .network import V2LTokenizer
from .quantizers import GlobalQuantizer, HNSWSearch, LocalQuantizer, nearest_codes, nearest_codes_naive, nearest_k
from .words import ImageWords, image_words

__all__ = [
    "TOKENIZER_PRESETS",
    "GlobalQuantizer",
    "HNSWSearch",
    "ImageTokenizer",
    "ImageWords",
    "LocalQuantizer",
    "TokenizedImage",
    "TokenizerConfig",
    "V2LTokenizer",
    "get_config",
    "image_words",
    "local_codebook_for",
    "local_exclusion",
    "local_tokens_for",
    "nearest_codes",
    "nearest_codes_naive",
    "nearest_k",
    "save_tokenizer_folder",
]
