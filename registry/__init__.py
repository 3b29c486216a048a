"""Model registry side: servable pyfunc wrappers and promotion of the best run.

Importing `registry` imports `pipelines` from the same tree. MLflow puts a model's `code_paths`
copy of both packages first on sys.path when it loads the model and never takes it off; a package
imported before stays the one in sys.modules. With both imported together, a process runs one
tree's code: this one in a process that imported either package (evaluate, promote, the web page,
the tests), the model's own copy in a fresh one (`mlflow models serve`). Without this, a process
that had imported only `registry` would take `pipelines` from the first model it loaded (MLflow
even validates each logged model from a temporary copy, deleted once logged).
"""
import pipelines  # noqa: F401
