"""Tests for the manifest arithmetic of scripts/prepare-variants.py.

Run with: python3 -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import importlib.util
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "prepare-variants.py"
spec = importlib.util.spec_from_file_location("prepare_variants", SCRIPT)
prepare_variants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_variants)

# SmolLM2-135M: 134,515,008 parameters in 30 layers of 3,538,944 matrix weights and two
# norm vectors of 576 each.
SMOLLM2_PARAMS = 134_515_008
LAYER_WEIGHTS = 3_538_944
LAYER_PARAMS = LAYER_WEIGHTS + 2 * 576


def report(layers: list[tuple[int, int]], n_params: int = 1000) -> dict:
    """Builds the parts of a `prunechat eval --json` report that the manifest reads."""
    return {
        "sparsity": {
            "layers": [{"n_weights": n, "n_zeros": z} for n, z in layers],
            "n_params": n_params,
            "n_nonzero_params": n_params - sum(z for _, z in layers),
            "file_bytes": 4321,
        },
        "perplexity": {
            "perplexity": 12.5,
            "mean_nll": 2.5257,
            "top1_agreement": 0.8,
            "n_windows": 4,
            "n_predicted": 508,
        },
    }


class ManifestEntryTest(unittest.TestCase):
    def test_zeros_count_as_sparsity(self) -> None:
        entry = prepare_variants.manifest_entry(
            "w", "W", "wanda", Path("models/variants/w.gguf"), report([(100, 50), (100, 50)]), 200, 3.5
        )
        self.assertAlmostEqual(entry["sparsity"], 0.5)
        self.assertEqual(entry["file"], "models/variants/w.gguf")
        self.assertEqual(entry["layers"], 2)
        self.assertEqual(entry["bytes"], 4321)
        self.assertEqual(entry["prune_seconds"], 3.5)
        self.assertEqual(entry["eval"]["n_predicted"], 508)

    def test_removed_layers_count_as_sparsity(self) -> None:
        entry = prepare_variants.manifest_entry(
            "l", "L", "layers", Path("models/variants/l.gguf"), report([(100, 10)]), 200, None
        )
        # 90 nonzero weights of the dense model's 200.
        self.assertAlmostEqual(entry["sparsity"], 0.55)

    def test_dense_model_sparsity_is_its_zeros(self) -> None:
        entry = prepare_variants.manifest_entry(
            "d", "D", "none", Path("models/d.gguf"), report([(100, 1), (100, 3)]), 200, None
        )
        self.assertAlmostEqual(entry["sparsity"], 0.02)


class LayerTargetTest(unittest.TestCase):
    def test_target_between_three_and_four_layers(self) -> None:
        target = prepare_variants.target_fraction(SMOLLM2_PARAMS, LAYER_WEIGHTS, 4)
        budget = target * SMOLLM2_PARAMS
        self.assertGreater(SMOLLM2_PARAMS - 3 * LAYER_PARAMS, budget)
        self.assertLessEqual(SMOLLM2_PARAMS - 4 * LAYER_PARAMS, budget)


if __name__ == "__main__":
    unittest.main()
