"""The code file MLflow logs as the model ("models from code"): loading the model runs this file,
so no pickled object is ever read back. The class lives in ``pyfunc.py``."""

import mlflow

from pipelines.registry.pyfunc import DubModel

mlflow.models.set_model(DubModel())
