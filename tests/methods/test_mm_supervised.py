from tests.conftest import tiny_config
from workbench.train import Trainer


def test_mm_supervised_reports_fused_and_single_modality_inference(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, method="mm-supervised", epochs=1), tmp_path / "run", quiet=True)
    result = trainer.fit()
    trainer.close()
    assert set(result["summary"]) == {"fused", "t1 only", "flair only"}
