"""MLflow for the whole pipeline: tracking URI, runs and their tags, the data key, the run-folder
layout, model logging and the Model Registry (training, inference, tuning and analysis use it).

    runs.py         URI resolution (fails fast), parent runs, reproducibility tags, data key,
                    RunSpec: the run-folder layout runs/<model>/<sensor set>/fold<k>
    registry.py     log a trained bundle, register this configuration's fold runs, load fold models
    pyfunc_model.py the served model (`mlflow models serve`): the same windowed prediction as infer
"""
