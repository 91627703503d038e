"""What a Keras WaveNet really is, read from its layers (by :data:`local.model.wavenet.LAYERS`), and the check
that it is the network its ``model.json`` describes (an edited file would make the fast generator fold the
weights of other layers)."""
from local.core.config import StageError
from local.model.wavenet import LAYERS
from local.store.layout import RunDir


def model_structure(model):
    """The :class:`local.model.wavenet.WaveNetConfig` fields a built or loaded Keras WaveNet really has, read from
    its layers: {field: value}, the tuples as lists. What ``model.json`` says must equal these."""
    layers = {layer.name: layer for layer in model.layers}

    def numbered(name_of):
        found = []
        while name_of(len(found)) in layers:
            found.append(layers[name_of(len(found))])
        return found

    convs, embedding = numbered(LAYERS.conv), layers.get(LAYERS.input_embedding)
    structure = {"dilations": [int(c.dilation_rate[0]) for c in convs],
                 "filter_width": int(convs[0].kernel_size[0]) if convs else 0,
                 "residual_channels": int(embedding.output_dim) if embedding is not None else 0,
                 "dilation_channels": int(convs[0].filters) // 2 if convs else 0,
                 "skip_channels": int(layers[LAYERS.skip(0)].filters) if LAYERS.skip(0) in layers else 0,
                 "quantization_channels": int(embedding.input_dim) if embedding is not None else 0,
                 "genre_conditioning": LAYERS.genre_embedding in layers}
    if LAYERS.genre_embedding in layers:
        structure.update(genre_channels=int(layers[LAYERS.genre_embedding].output_dim),
                         n_genres=int(layers[LAYERS.genre_embedding].input_dim))
    pool = layers.get(LAYERS.context_pool)
    structure["context_rate"] = int(pool.pool_size[0]) if pool is not None else 0
    if pool is not None:
        structure.update(context_dilations=[int(c.dilation_rate[0]) for c in numbered(LAYERS.context_conv)],
                         context_channels=int(layers[LAYERS.context_embedding].output_dim))
    return structure


def structure_mismatch(model, config):
    """Where the Keras ``model`` (model.keras) differs from ``config`` (model.json's WaveNetConfig): one phrase
    per differing field, "dilations [1, 2, 4, 8] in the model, [1, 2] in model.json", joined by "; "; "" when
    they agree. Without this check the fast generator would fold the weights by model.json's layer count."""
    described = config.to_json()
    differences = []
    for key, actual in model_structure(model).items():
        said = described.get(key)
        if said != actual:
            differences.append(f"{key} {actual} in the model, {said} in model.json")
    return "; ".join(differences)


def check_model_matches(model, config, run_dir):
    """StageError (one line naming both files) when the loaded model.keras is not the network model.json
    describes (an edited dilations list): evaluation and the fast generator read the structure from model.json."""
    problem = structure_mismatch(model, config)
    if problem:
        files = RunDir(run_dir)
        raise StageError(f"{files.model_keras} and {files.model_json} disagree ({problem}): restore model.json "
                         f"from training or retrain this run")
