import subprocess
import sys


def test_model_package_imports_only_torch():
    """Principle 2: the model package can be used without the data/training stack."""
    code = (
        "import sys, iptalker_model, iptalker_model.training, iptalker_model.checkpoint\n"
        "bad = [m for m in ('ray', 'deepspeed', 'mlflow', 'preprocessing', 'pipelines', 'orchestration',"
        " 'whisper', 'torchvision') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
