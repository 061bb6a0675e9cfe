"""Tiny diffusers pipelines with random weights, built in code: try the diffusers adapter offline.

Real diffusers pipeline classes, each component built from a small config with
seeded random weights, nothing downloaded (the tokenizers are word lists made
here with the ``tokenizers`` package). They run in about a second on a CPU and
make noise-like pictures: what they show is the machinery (progress, previews,
stop, mp4 encoding), not a model's quality. The tests, the notebook
``notebooks/diffusers_pipeline.ipynb`` and ``benchmarks/bench_diffusers.py`` use
them::

    from diffusers import Cosmos2_5_PredictBasePipeline
    from cosmos_gradio_nb import NotebookApp
    from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params
    from cosmos_gradio_nb.samples import tiny_diffusers as tiny

    app = NotebookApp(
        pipeline_params(Cosmos2_5_PredictBasePipeline, defaults=tiny.VIDEO_DEFAULTS),
        factory=pipeline_factory(build=tiny.cosmos_predict),
    )

- :func:`cosmos_predict`: ``Cosmos2_5_PredictBasePipeline`` (Cosmos 2.5, video): a
  2-layer ``CosmosTransformer3DModel``, the Wan VAE (``AutoencoderKLWan``), a
  2-layer Qwen2.5-VL text encoder and a chat-template tokenizer.
- :func:`cosmos_text_to_image`: ``Cosmos2TextToImagePipeline`` (Cosmos 2, image),
  with a 1-layer T5 encoder.
- :func:`stable_diffusion`: ``StableDiffusionPipeline`` (image, 4-channel latents).

The Cosmos pipelines refuse to run without a safety checker, and their default,
``cosmos_guardrail``, downloads guardrail models when it starts:
:class:`StandInSafetyChecker` lets everything through. It is for these random
models only; a real Cosmos model is served with its real guardrail.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLWan,
    ConfigMixin,
    Cosmos2_5_PredictBasePipeline,
    Cosmos2TextToImagePipeline,
    CosmosTransformer3DModel,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    ModelMixin,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)

__all__ = [
    "IMAGE_DEFAULTS",
    "VIDEO_DEFAULTS",
    "StandInSafetyChecker",
    "cosmos_predict",
    "cosmos_text_to_image",
    "stable_diffusion",
    "word_tokenizer",
]

# Request defaults that keep these models at about a second on a CPU.
IMAGE_DEFAULTS: dict[str, Any] = {
    "prompt": "a red car on a rainy street at night",
    "negative_prompt": "blurry",
    "height": 64,
    "width": 64,
    "num_inference_steps": 8,
}
VIDEO_DEFAULTS: dict[str, Any] = {
    "prompt": "a robot arm stacks blue blocks on a table",
    "negative_prompt": "blurry",
    "height": 64,
    "width": 64,
    "num_frames": 9,
    "num_inference_steps": 6,
    "guidance_scale": 3.0,
    "max_sequence_length": 24,
    "fps": 8,
}

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "at",
    "to",
    "and",
    "with",
    "by",
    "for",
    "is",
    "are",
    "who",
    "will",
    "you",
    "helpful",
    "assistant",
    "provide",
    "prompts",
    "image",
    "generator",
    "video",
    "world",
    "red",
    "blue",
    "green",
    "gold",
    "white",
    "black",
    "car",
    "street",
    "night",
    "rainy",
    "sky",
    "sea",
    "mountain",
    "robot",
    "arm",
    "stacks",
    "blocks",
    "table",
    "dog",
    "cat",
    "city",
    "light",
    "dusk",
    "blurry",
    "bad",
    "quality",
    "ugly",
    "static",
    "motion",
    "system",
    "user",
]
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "</s>"]
# Enough of Qwen's chat format for Cosmos 2.5's prompt encoder (roles and texts, in turn).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|> {{ message['role'] }} "
    "{% for part in message['content'] %}{{ part['text'] }} {% endfor %}<|im_end|> "
    "{% endfor %}"
)


def word_tokenizer(max_length: int = 64, chat_template: str | None = None) -> Any:
    """A fast tokenizer over :data:`WORDS` (one id per lower-case word), built without files."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate([*SPECIALS, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        model_max_length=max_length,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


class StandInSafetyChecker(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Lets every prompt and video through: the Cosmos guardrail's interface, for random models."""

    def __init__(self) -> None:
        super().__init__()
        # Where the pipeline's device and dtype queries look.
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames


def _wan_vae() -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _cosmos_transformer(in_channels: int, text_dim: int) -> CosmosTransformer3DModel:
    return CosmosTransformer3DModel(
        in_channels=in_channels,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=text_dim,
        adaln_lora_dim=4,
        max_size=(8, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=False,  # True needs torchvision
        extra_pos_embed_type="learnable",
    )


def cosmos_predict(seed: int = 0) -> Cosmos2_5_PredictBasePipeline:
    """A tiny ``Cosmos2_5_PredictBasePipeline`` (text/image/video to world), random weights."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = word_tokenizer(max_length=64, chat_template=CHAT_TEMPLATE)
    size = len(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 256,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": None,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
    )
    torch.manual_seed(seed)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    # The prompt embedding concatenates every layer's hidden states: 2 x 32.
    transformer = _cosmos_transformer(in_channels=16 + 1, text_dim=64)
    torch.manual_seed(seed)
    vae = _wan_vae()
    return Cosmos2_5_PredictBasePipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=UniPCMultistepScheduler(),
        safety_checker=StandInSafetyChecker(),
    )


def cosmos_text_to_image(seed: int = 0) -> Cosmos2TextToImagePipeline:
    """A tiny ``Cosmos2TextToImagePipeline`` (Cosmos 2 text to image), random weights."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = word_tokenizer(max_length=64)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=4
    )
    text_encoder = T5EncoderModel(config).eval()
    torch.manual_seed(seed)
    transformer = _cosmos_transformer(in_channels=16, text_dim=32)
    torch.manual_seed(seed)
    vae = _wan_vae()
    return Cosmos2TextToImagePipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=StandInSafetyChecker(),
    )


def stable_diffusion(seed: int = 0, vae: AutoencoderKL | None = None) -> StableDiffusionPipeline:
    """A tiny ``StableDiffusionPipeline`` (4-channel latents, a UNet), random weights.

    ``vae`` replaces its autoencoder (the tests pass one whose decode runs a tqdm bar).
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = word_tokenizer(max_length=16)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    torch.manual_seed(seed)
    vae = vae or AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
        )
    ).eval()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
