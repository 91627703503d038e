"""The WaveNet: causality, the receptive field, save/load, overfitting a chord, genre conditioning."""
import librosa
import numpy as np
import pytest

from local.core.config import ConfigError
from local.dataset import windows
from local.model.wavenet import WaveNetConfig, build_wavenet, default_dilations, receptive_field
from local.train import loop, wavenet_task

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

TINY = dict(residual_channels=8, dilation_channels=8, skip_channels=16, quantization_channels=32)


def mu_codes(x, quantization_channels):
    """The contract's codes for a float waveform in [-1, 1]: (n,) int32."""
    return (librosa.mu_compress(np.clip(x, -1, 1), mu=quantization_channels - 1, quantize=True)
            + quantization_channels // 2).astype(np.int32)


def outputs(model, codes, genre=None):
    inputs = [codes[None, :].astype(np.int32)]
    if genre is not None:
        inputs.append(np.array([genre], dtype=np.int32))
    return np.asarray(model(inputs))[0]


def test_receptive_field_formula():
    assert receptive_field([1, 2, 4], 2) == 8
    assert receptive_field([1, 2, 4], 3) == 15
    assert receptive_field(default_dilations(2, 10), 2) == 2047
    assert default_dilations(1, 3) == [1, 2, 4]


def test_config_resolves_validates_and_round_trips():
    stacked = WaveNetConfig.from_config({"dilations": [1], "layers_per_stack": 3, "stacks": 2, "filter_width": 3,
                                         "genre_conditioning": True}, n_genres=4)
    assert stacked.dilations == (1, 2, 4, 1, 2, 4) and stacked.n_layers == 6 and stacked.conditioned
    assert stacked.receptive_field == receptive_field([1, 2, 4] * 2, 3) == 29
    assert WaveNetConfig.from_json(stacked.to_json()) == stacked
    assert stacked.to_json()["dilations"] == [1, 2, 4, 1, 2, 4] and stacked.to_json()["n_genres"] == 4
    assert WaveNetConfig.from_config({"dilations": [1, 2]}).dilations == (1, 2)  # layers_per_stack = 0: the list
    for config, key in (({"layers_per_stack": 3, "stacks": 0}, "--stacks=0"), ({"dilations": []}, "--dilations="),
                        ({"dilations": [1, 0]}, "--dilations=1,0"), ({"filter_width": 1}, "--filter_width=1"),
                        ({"skip_channels": 0}, "--skip_channels=0")):
        with pytest.raises(ConfigError, match=key) as error:
            WaveNetConfig.from_config(config)
        assert str(error.value).count("--") == 1  # names exactly one key
    plain = WaveNetConfig([1, 2])
    assert plain.model_inputs("codes", "genres") == ["codes"] and stacked.model_inputs("c", "g") == ["c", "g"]


@pytest.mark.parametrize("filter_width,genre", [(2, None), (3, 1)])
def test_causal_and_exact_receptive_field(filter_width, genre):
    """Changing input t changes outputs t .. t+R-1 only (output t predicts t+1), and nothing before t."""
    dilations = [1, 2, 4, 8]
    field = receptive_field(dilations, filter_width)
    keras.utils.set_random_seed(0)
    model = build_wavenet(WaveNetConfig(dilations, filter_width, genre_conditioning=genre is not None, n_genres=3, **TINY))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 32, 3 * field)
    base = outputs(model, codes, genre)
    for t in (0, field // 2, field, 2 * field - 1):
        changed = codes.copy()
        changed[t] = (changed[t] + 7) % 32
        delta = np.abs(outputs(model, changed, genre) - base).max(axis=1)  # (time,)
        assert delta[:t].max(initial=0) == 0, f"output before {t} depends on input {t}: not causal"
        affected = np.nonzero(delta > 0)[0]
        assert affected.min() == t
        assert affected.max() == min(t + field - 1, len(codes) - 1), "dependence does not match receptive_field()"


def test_save_and_load_without_custom_objects(tmp_path):
    model = build_wavenet(WaveNetConfig([1, 2], 2, genre_conditioning=True, n_genres=2, **TINY))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    codes = np.arange(20) % 32
    np.testing.assert_allclose(outputs(loaded, codes, 1), outputs(model, codes, 1), atol=1e-6)
    assert {layer.name for layer in loaded.layers} >= {"input_embedding", "genre_embedding", "layer0_conv",
                                                       "layer1_cond", "layer0_skip", "layer0_residual",
                                                       "postprocess1", "postprocess2"}


@pytest.mark.parametrize("filter_width", [2, 3])
def test_shifted_formulation_equals_keras_conv_and_shares_its_weights(tmp_path, filter_width):
    from local.generate import weights as generation
    dilations = [1, 2, 4, 16]
    config = WaveNetConfig(dilations, filter_width, genre_conditioning=True, n_genres=2, **TINY)
    stock = build_wavenet(config)
    shifted = build_wavenet(config, formulation="shifted")  # a build option: the same WaveNetConfig
    rng = np.random.default_rng(3)
    stock.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in stock.get_weights()])
    weights_path = str(tmp_path / "stock.weights.h5")
    stock.save_weights(weights_path)  # a checkpoint of the stock layers loads into the shifted model
    shifted.load_weights(weights_path)
    codes = rng.integers(0, 32, 300)
    expected = outputs(stock, codes, 1)
    np.testing.assert_allclose(outputs(shifted, codes, 1), expected, atol=1e-4)
    assert type(shifted.get_layer("layer3_conv")) is not type(stock.get_layer("layer3_conv"))
    path = str(tmp_path / "shifted.keras")
    shifted.save(path)
    loaded = keras.models.load_model(path)  # registered: no custom_objects needed
    assert type(loaded.get_layer("layer3_conv")) is type(shifted.get_layer("layer3_conv"))
    np.testing.assert_allclose(outputs(loaded, codes, 1), expected, atol=1e-4)
    from_json = keras.models.model_from_json(shifted.to_json())  # how Elephas's workers rebuild it
    from_json.set_weights(shifted.get_weights())
    np.testing.assert_allclose(outputs(from_json, codes, 1), expected, atol=1e-4)
    weights = generation.fold_weights(loaded, config)  # the fast generator reads it as it reads the stock layers
    assert weights["dilations"].tolist() == dilations and weights["filter_width"] == filter_width


def train(model, config, inputs, targets, genres, *, window, steps, learning_rate=1e-2, batch_size=8, seed=0):
    """A few hundred Adam steps on random batches of fixed examples; returns the last losses (bits)."""
    optimizer = loop.make_optimizer(learning_rate)
    step = wavenet_task.make_train_step(model, config, optimizer, window)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        pick = rng.integers(0, len(targets), batch_size)
        features = {"codes": tf.constant(inputs[pick]), "genre_id": tf.constant(genres[pick])}
        losses.append(float(step(features, tf.constant(targets[pick]))) / loop.LN2)
    return losses


def test_overfit_a_chord():
    """Like the reference implementation's test: a 3-note chord at 2 kHz is learned to below 0.1 bit/sample."""
    sample_rate, quantization = 2000, 32
    t = np.arange(int(0.5 * sample_rate)) / sample_rate
    chord = 0.3 * (np.sin(2 * np.pi * 155.56 * t) + np.sin(2 * np.pi * 196.0 * t) + np.sin(2 * np.pi * 233.08 * t))
    codes = mu_codes(chord, quantization)
    dilations = [1, 2, 4, 8, 16, 32]
    field, window = receptive_field(dilations, 2), 128
    starts = np.arange(0, len(codes) - field - window + 1, 16)
    inputs, targets = windows.windows_from_codes(codes, field, window, starts)
    keras.utils.set_random_seed(1)
    config = WaveNetConfig(dilations, 2, residual_channels=16, dilation_channels=16, skip_channels=32,
                           quantization_channels=quantization)
    model = build_wavenet(config)
    losses = train(model, config, inputs, targets, np.zeros(len(targets), np.int32), window=window, steps=200)
    assert np.mean(losses[:5]) > 4.0  # it starts near log2(32) = 5 bits
    assert np.mean(losses[-10:]) < 0.1, f"did not overfit: {np.mean(losses[-10:]):.3f} bits/sample"


def greedy_generate(model, field, genre, n_samples, quantization):
    """The slow, obviously correct generator: argmax of the model on the last receptive field, one at a time."""
    run = tf.function(lambda codes, g: model([codes, g])[:, -1, :])
    codes = [quantization // 2] * field  # silence
    for _ in range(n_samples):
        context = np.array([codes[-field:]], dtype=np.int32)
        codes.append(int(np.argmax(run(context, np.array([genre], np.int32)))))
    return np.array(codes[field:])


def dominant_hz(codes, sample_rate, quantization):
    x = librosa.mu_expand(codes - quantization // 2, mu=quantization - 1, quantize=True)
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sample_rate)[np.argmax(spectrum)]


def test_genre_conditioning_generates_each_genres_tone():
    """Genre 0 = a 100 Hz tone, genre 1 = a 250 Hz tone (both after silence): generating from silence with
    each genre id gives that genre's tone. (Cosines: the tone's first sample differs from silence, so a
    silent context is always followed by the tone.)"""
    sample_rate, quantization = 1000, 32
    dilations = [1, 2, 4, 8, 16]
    field, window = receptive_field(dilations, 2), 96
    inputs, targets, genres = [], [], []
    for genre, hz in enumerate((100.0, 250.0)):
        t = np.arange(window + 64) / sample_rate
        track = np.concatenate([np.zeros(field), 0.6 * np.cos(2 * np.pi * hz * t)])
        codes = mu_codes(track, quantization)
        x, y = windows.windows_from_codes(codes, field, window, np.arange(0, 65, 4))
        inputs.append(x), targets.append(y), genres.append(np.full(len(y), genre, np.int32))
    inputs, targets, genres = map(np.concatenate, (inputs, targets, genres))
    keras.utils.set_random_seed(2)
    config = WaveNetConfig(dilations, 2, genre_conditioning=True, genre_channels=4, n_genres=2, residual_channels=16,
                           dilation_channels=16, skip_channels=32, quantization_channels=quantization)
    model = build_wavenet(config)
    losses = train(model, config, inputs, targets, genres, window=window, steps=150)
    assert np.mean(losses[-10:]) < 0.5
    for genre, hz in enumerate((100.0, 250.0)):
        generated = greedy_generate(model, field, genre, 100, quantization)
        assert dominant_hz(generated, sample_rate, quantization) == pytest.approx(hz, abs=12), f"genre {genre}"


# --- the context stack (issue 18) ----------------------------------------------------------------------

CONTEXT = dict(dilations=[1, 2, 4], context_rate=4, context_dilations=[1, 2, 4], context_channels=6, **TINY)


def test_context_config_fields_and_fields_of_view():
    config = WaveNetConfig.from_config({**CONTEXT, "context_layers": 2, "genre_conditioning": True}, n_genres=2)
    assert config.context_dilations == (1, 2) and config.has_context
    config = WaveNetConfig(**CONTEXT)
    assert config.receptive_field == 8 and config.context_receptive_frames == 8
    # every position of the sample stack sees 8 whole frames: the input brings 8 frames = 32 codes before it
    assert config.context_past == 32 and config.window_field == 40
    assert config.total_receptive_field == 9 * 4 - 2 + 8 - 1  # at the worst frame phase, through the 2nd layer
    assert config.receptive_field_json(16) == {"total_receptive_field": 41, "total_receptive_field_seconds": 2.5625,
                                               "context_past": 32}
    assert WaveNetConfig.from_json(config.to_json()) == config
    old = {k: v for k, v in WaveNetConfig([1, 2]).to_json().items() if not k.startswith("context")}
    assert not WaveNetConfig.from_json(old).has_context  # a model.json from before the context stack
    assert WaveNetConfig([1, 2]).total_receptive_field == 4 and WaveNetConfig([1, 2]).context_past == 0
    with pytest.raises(ConfigError, match="--context_dilations=1,0"):
        WaveNetConfig(**{**CONTEXT, "context_dilations": [1, 0]})
    with pytest.raises(ConfigError, match="--context_rate=-1"):
        WaveNetConfig(**{**CONTEXT, "context_rate": -1})
    np.testing.assert_array_equal(config.pad_context(np.array([[3, 4]]))[0, -3:], [16, 3, 4])
    assert config.pad_context(np.zeros((2, 5), np.int32)).shape == (2, 37)


@pytest.mark.slow
@pytest.mark.parametrize("genre", [None, 1])
def test_context_stack_is_causal_and_hears_its_whole_field(genre):
    """Inputs that differ only after input position m give equal logits up to m (output m - context_past);
    a change at m reaches exactly as far as the whole model's receptive field, past the sample stack's."""
    config = WaveNetConfig(**CONTEXT, genre_conditioning=genre is not None, n_genres=3)
    keras.utils.set_random_seed(0)
    model = build_wavenet(config)
    rng = np.random.default_rng(1)
    for weight in model.weights:  # every weight random, so no path hides behind a zero
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    past, total = config.context_past, config.total_receptive_field
    codes = rng.integers(0, 32, past + 120)
    base = outputs(model, codes, genre)
    assert base.shape[0] == len(codes) - past
    for m in range(past, past + 40):
        after = codes.copy()
        after[m + 1:] = rng.integers(0, 32, len(codes) - m - 1)
        delta = np.abs(outputs(model, after, genre) - base).max(axis=1)
        assert delta[:m - past + 1].max() == 0, f"output {m - past} depends on inputs after {m}: not causal"
    reach = []
    for m in range(past, past + 40):
        changed = codes.copy()
        changed[m] = (changed[m] + 7) % 32
        affected = np.nonzero(np.abs(outputs(model, changed, genre) - base).max(axis=1) > 0)[0] + past
        assert affected.min() == m
        reach.append(affected.max() - m + 1)
    assert max(reach) == total > config.receptive_field  # the context stack carries it past the sample stack


def test_context_model_saves_loads_and_rebuilds_from_json(tmp_path):
    model = build_wavenet(WaveNetConfig(**CONTEXT, genre_conditioning=True, n_genres=2))
    path = str(tmp_path / "model.keras")
    model.save(path)
    codes = np.arange(60) % 32
    np.testing.assert_allclose(outputs(keras.models.load_model(path), codes, 1), outputs(model, codes, 1), atol=1e-6)
    rebuilt = keras.models.model_from_json(model.to_json())
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(outputs(rebuilt, codes, 1), outputs(model, codes, 1), atol=1e-6)
