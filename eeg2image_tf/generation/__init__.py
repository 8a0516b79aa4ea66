"""Image generation from a GAN run: batches in memory (:mod:`.batches`), JPEG files and their
manifest (:mod:`.files`, :mod:`.jpeg`), and opening a run's generator, encoder and conditions
(:mod:`.sources`).
"""

from .batches import (GeneratedBatch, GeneratedSet, LatentStreams, generate_arrays, group_by_class,
                      iterate_generated, make_uint8_forward, prepare_forward)
from .files import (MANIFEST_COLUMNS, GenerationManifest, ManifestRow, generate_images,
                    image_file_name, manifest_text, read_manifest)
from .jpeg import decode_jpeg, encode_jpeg, jpeg_round_trip
from .sources import (GenerationSources, generate_from_run, generator_of, load_generation_sources,
                      with_training_conditions)

__all__ = [
    "GeneratedBatch", "GeneratedSet", "GenerationManifest", "GenerationSources", "LatentStreams",
    "MANIFEST_COLUMNS", "ManifestRow", "decode_jpeg", "encode_jpeg", "generate_arrays",
    "generate_from_run", "generate_images", "generator_of", "group_by_class", "image_file_name",
    "iterate_generated", "jpeg_round_trip", "load_generation_sources", "make_uint8_forward",
    "manifest_text", "prepare_forward", "read_manifest", "with_training_conditions",
]
