"""The run's report page: ``<run_dir>/report.html``, one static HTML file built from what the run directory holds.

    report_callbacks(model, run_dir, sample_every=..., ...)   # the trainers' on_evaluate callbacks: clips + page
    write_report(run_dir)                    # at the end of training, after generating clips
    note_generation(run_dir, "data/generated/generation.json")   # what run_model_predictions.py calls

It shows the run's settings, the loss curves (train, valid, the unigram and uniform baselines) as an inline
SVG, the evaluation table (``evaluation.json``), the judge figures over steps (``metrics.csv``'s
``judge_genre_accuracy`` / ``judge_flatness_ratio`` columns), the genre x step table of the clips sampled while
training (``samples/step-<step>/``, local/generate/samples.py) with an audio player and a spectrogram in each cell, and
the clips of run_model_predictions.py.

Static and self-contained: every link is relative to the run directory, nothing is fetched from the network
(no CDN scripts or fonts), so the folder can be copied, synced to S3 (aws/s3_sync.py) or served by any static
server. Generated clips that live outside the run directory are copied into ``<run_dir>/report_files/``.
Where they are comes from ``<run_dir>/generations.json``, a list of generation.json paths (relative to the run
directory) that :func:`note_generation` keeps, or from write_report's ``generation_json`` argument.
"""
import datetime
import math
import os
import re
import shutil
import urllib.parse

from local.core.fileio import atomic_path, read_json, write_json_atomic, write_text_atomic
from local.generate import samples
from local.report.html import _e, _finite, _fmt, _table, svg_chart
from local.store import rundir
from local.store.layout import RunDir

REPORT_NAME = RunDir.REPORT
GENERATIONS_NAME = RunDir.GENERATIONS  # the pointer file: where this run's generation.json files are
COPIES_DIR = RunDir.REPORT_FILES  # copies of generated clips that live outside the run directory
MIN_PLAYABLE_HZ = 3000  # Chromium's lowest audio sample rate (media/base/limits.h kMinSampleRate)
JUDGE_COLUMNS = samples.JUDGE_COLUMNS


# --- reading the run directory -------------------------------------------------------------------------

def _read_json(path):
    """The JSON in ``path``, or None when it is missing or unreadable (a page is better than no page)."""
    return read_json(path)


def note_generation(run_dir, generation_json):
    """Remember in ``<run_dir>/generations.json`` that ``generation_json`` holds clips of this run.

    Paths are kept relative to the run directory (so moving the project keeps them valid), newest last,
    each once. Returns the pointer file's path.
    """
    pointer = os.path.join(run_dir, GENERATIONS_NAME)
    known = (_read_json(pointer) or {}).get("generation_json", [])
    relative = os.path.relpath(os.path.abspath(generation_json), os.path.abspath(run_dir))
    known = [p for p in known if p != relative] + [relative]
    return write_json_atomic(pointer, {"generation_json": known})


def generation_files(run_dir, generation_json=None):
    """The generation.json paths to show: those in the pointer file, then ``generation_json``; existing only."""
    pointer = _read_json(os.path.join(run_dir, GENERATIONS_NAME)) or {}
    paths = [os.path.join(run_dir, p) for p in pointer.get("generation_json", [])]
    if generation_json:
        paths.append(generation_json)
    seen, found = set(), []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen and os.path.isfile(path):
            seen.add(key)
            found.append(path)
    return found


def _inside(path, directory):
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def _local_copy(path, run_dir, group):
    """``path`` itself when it is inside ``run_dir``, else a copy in ``report_files/<group>/`` (copied again
    only when the source changed). Returns the path to link, or None when the source is missing."""
    if not os.path.isfile(path):
        return None
    if _inside(path, run_dir):
        return path
    target = os.path.join(run_dir, COPIES_DIR, group, os.path.basename(path))
    source_stat = os.stat(path)
    if os.path.isfile(target):
        target_stat = os.stat(target)
        if target_stat.st_size == source_stat.st_size and target_stat.st_mtime >= source_stat.st_mtime:
            return target
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return target


def _href(path, run_dir):
    """A relative URL from the page (in ``run_dir``) to ``path``: ``/`` separators, each part %-quoted."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(run_dir))
    return "/".join(urllib.parse.quote(part) for part in relative.split(os.sep))


def _clip_cell(wav, png, run_dir, caption="", judge=None, problem=""):
    """One clip: a caption, an audio player and the spectrogram (linked to itself at full size)."""
    parts = ['<div class="clip">']
    if caption:
        parts.append(f'<div class="caption">{_e(caption)}</div>')
    if wav:
        parts.append(f'<audio controls preload="metadata" src="{_e(_href(wav, run_dir))}"></audio>')
    if png:
        href = _e(_href(png, run_dir))
        parts.append(f'<a href="{href}"><img src="{href}" alt="{_e("spectrogram of " + (caption or "clip"))}" '
                     f'loading="lazy"></a>')
    if problem:
        parts.append(f'<div class="problem">{_e(problem)}</div>')
    if isinstance(judge, dict) and judge:
        items = [(k, v) for k, v in judge.items() if not isinstance(v, (dict, list))]
        parts.append('<div class="judge">' + "<br>".join(f"{_e(k)}: {_e(_fmt(v))}" for k, v in items) + "</div>")
    parts.append("</div>")
    return "".join(parts)


# --- the sections --------------------------------------------------------------------------------------

def _settings_section(config, model_info):
    rows = []
    if model_info:
        model = model_info.get("model", {})
        rows += [("genres", model_info.get("genres", [])), ("sample rate (Hz)", model_info.get("sample_rate")),
                 ("receptive field (samples)", model_info.get("receptive_field")),
                 ("whole model's receptive field, with the context stack",
                  f'{model_info["total_receptive_field"]} samples ({model_info["total_receptive_field_seconds"]:g} s)'
                  if model.get("context_rate") and "total_receptive_field" in model_info else None),
                 ("context stack (frames of samples, dilations)",
                  f'{model["context_rate"]}, {model.get("context_dilations")}' if model.get("context_rate") else None),
                 ("quantization channels", model_info.get("quantization_channels")),
                 ("layers", len(model.get("dilations", []))),
                 ("genre conditioning", model.get("genre_conditioning"))]
    rows = [r for r in rows if r[1] not in (None, "")]
    config_rows = sorted((k, v) for k, v in (config or {}).items() if not isinstance(v, dict))
    out = ['<section id="settings"><h2>Settings</h2>']
    if rows:
        out.append(_table(rows, css="kv"))
    if config_rows:
        out.append("<details><summary>config.json (every key)</summary>" + _table(config_rows, css="kv")
                   + "</details>")
    out.append("</section>")
    return "\n".join(out)


def _baselines(run_dir, model_info, evaluation):
    """(unigram, uniform) bits/sample: baselines.json (written at training), else evaluation.json / model.json."""
    saved = _read_json(RunDir(run_dir).baselines_json) or {}
    evaluation = evaluation or {}
    unigram = saved.get("unigram_bits_per_sample", evaluation.get("unigram_bits_per_sample"))
    uniform = saved.get("uniform_bits_per_sample", evaluation.get("uniform_bits_per_sample"))
    if uniform is None and model_info and model_info.get("quantization_channels"):
        uniform = math.log2(int(model_info["quantization_channels"]))
    return unigram, uniform


def write_baselines(run_dir, uniform_bits_per_sample, unigram_bits_per_sample):
    """Save the loss baselines (bits/sample) the page draws beside the curves: ``<run_dir>/baselines.json``."""
    return write_json_atomic(RunDir(run_dir).baselines_json,
                             {"uniform_bits_per_sample": float(uniform_bits_per_sample),
                              "unigram_bits_per_sample": float(unigram_bits_per_sample)})


def _loss_section(rows, unigram, uniform):
    if not rows:
        return ('<section id="loss"><h2>Loss</h2><p>No metrics yet (metrics.csv is written at every evaluation).</p>'
                '</section>')
    steps = [r["step"] for r in rows]
    series = [(name, steps, [r.get(f"{name}_bits_per_sample", float("nan")) for r in rows])
              for name in ("train", "valid")]
    chart = svg_chart(series, "loss", "bits per sample", hlines=[("unigram", unigram), ("uniform", uniform)])
    last = rows[-1]
    best = min((r for r in rows if _finite(r.get("valid_bits_per_sample"))),
               key=lambda r: r["valid_bits_per_sample"], default=None)
    facts = [("latest step", last["step"]), ("train bits/sample", last.get("train_bits_per_sample")),
             ("valid bits/sample", last.get("valid_bits_per_sample"))]
    if best:
        facts.append(("best valid bits/sample", f"{best['valid_bits_per_sample']:.4g} at step {best['step']}"))
    facts += [("unigram baseline", unigram), ("uniform baseline", uniform),
              ("samples/s (latest)", last.get("samples_per_second")),
              ("elapsed (minutes)", last["elapsed_seconds"] / 60 if _finite(last.get("elapsed_seconds")) else None)]
    return ('<section id="loss"><h2>Loss</h2>\n<div class="chart">' + chart + "</div>\n"
            + _table([f for f in facts if f[1] is not None], css="kv") + "</section>")


def _evaluation_section(evaluation):
    if not evaluation:
        return ""
    scalars = [(k, v) for k, v in evaluation.items() if not isinstance(v, (dict, list))]
    out = ['<section id="evaluation"><h2>Evaluation</h2>', _table(scalars, header=("figure", "value"), css="kv")]
    for key, value in evaluation.items():
        if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
            table = _table(sorted(value.items()), header=(key.replace("_", " "), "value"), css="kv")
            if len(value) > 12:
                out.append(f"<details><summary>{_e(key)} ({len(value)} entries)</summary>{table}</details>")
            else:
                out.append(table)
    out.append("</section>")
    return "\n".join(out)


def _judge_section(rows):
    judged = [r for r in rows if any(_finite(r.get(c)) for c in JUDGE_COLUMNS)]
    if not judged:
        return ""
    steps = [r["step"] for r in judged]
    columns = [c for c in JUDGE_COLUMNS if any(_finite(r.get(c)) for r in judged)]  # an older run has fewer
    chart = svg_chart([(c, steps, [r.get(c, float("nan")) for r in judged]) for c in columns],
                      "judge figures of the sampled clips", "value")
    table = _table([(r["step"],) + tuple(r.get(c) for c in columns) for r in judged],
                   header=("step",) + tuple(c[len("judge_"):].replace("_", " ") for c in columns))
    return ('<section id="judge"><h2>Judge</h2>\n<p>The genre tagger\'s verdict on the clips sampled at each step: '
            'the share it tags as the asked genre, their spectral flatness over the real tracks\', and their '
            'onsets per second over real excerpts\' of the same genres (rhythm).</p>\n'
            f'<div class="chart">{chart}</div>\n{table}</section>')


def _samples_section(run_dir, sampled):
    if not sampled:
        return ""
    genres = []
    for meta in sampled:
        for clip in meta.get("clips", []):
            if clip.get("genre", "") not in genres:
                genres.append(clip.get("genre", ""))
    first = sampled[-1]
    out = ['<section id="samples"><h2>Clips while training</h2>',
           f'<p>One clip per genre at each sampled step, {_e(_fmt(first.get("seconds", "")))} s each, the same seed '
           f'({_e(first.get("seed", ""))}) and temperature ({_e(_fmt(first.get("temperature", "")))}) every time: '
           'read a row left to right to hear the model learn.</p>',
           (f'<p class="problem">These clips are at {_e(first["sample_rate"])} Hz: browsers play WAV files from '
            f'{MIN_PLAYABLE_HZ:,} Hz up, so download them to listen.</p>'
            if first.get("sample_rate", MIN_PLAYABLE_HZ) < MIN_PLAYABLE_HZ else ""),
           '<div class="scroll"><table class="grid"><tr><th>genre</th>'
           + "".join(f'<th>step {_e(m["step"])}</th>' for m in sampled) + "</tr>"]
    for genre in genres:
        cells = [f'<th class="genre">{_e(genre or "(unconditioned)")}</th>']
        for meta in sampled:
            clip = next((c for c in meta.get("clips", []) if c.get("genre", "") == genre), None)
            if clip is None:
                cells.append("<td></td>")
                continue
            wav = os.path.join(meta["dir"], clip["wav"])
            png = os.path.join(meta["dir"], clip["png"]) if clip.get("png") else None
            cells.append("<td>" + _clip_cell(wav if os.path.isfile(wav) else None,
                                             png if png and os.path.isfile(png) else None, run_dir,
                                             judge=clip.get("judge"), problem=clip.get("problem", "")) + "</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div></section>")
    return "\n".join(out)


def _generated_section(run_dir, generation_paths):
    if not generation_paths:
        return ""
    out = ['<section id="generated"><h2>Generated clips</h2>']
    for path in generation_paths:
        report = _read_json(path) or {}
        clips = report.get("clips", [])
        folder = os.path.dirname(os.path.abspath(path))
        # one folder of copies per source folder, named after its path from the run (stable across rewrites)
        where = os.path.relpath(folder, os.path.abspath(run_dir))
        group = re.sub(r"[^A-Za-z0-9_]+", "-", where.replace("..", "up")).strip("-") or "generated"
        settings = report.get("config", {})
        out.append(f'<h3>{_e(os.path.relpath(folder, os.path.abspath(run_dir)))}</h3>')
        facts = [("clips", len(clips)), ("temperature", settings.get("temperature")), ("seed", settings.get("seed")),
                 ("samples/s per clip", clips[0].get("samples_per_second") if clips else None),
                 ("real time factor", report.get("real_time_factor"))]
        out.append(_table([f for f in facts if f[1] is not None], css="kv"))
        summary = report.get("judge_summary")
        if isinstance(summary, dict) and summary:
            out.append(_table([(k, _with_interval(summary, k)) for k, v in summary.items()
                               if not isinstance(v, (dict, list))], header=("judge", "value"), css="kv"))
        per_genre = report.get("judge_per_genre")
        if isinstance(per_genre, dict) and per_genre:
            out.append(_per_genre_table(per_genre))
        real = {r.get("genre"): r for r in report.get("real_plans") or [] if isinstance(r, dict)}
        cells = []
        for clip in sorted(clips, key=lambda c: str(c.get("genre"))) if real else clips:
            reference = real.pop(clip.get("genre"), None)
            if reference:  # a real excerpt of the genre first: its plan beside the generated ones
                cells.append(_clip_cell(_local_copy(_clip_path(reference.get("wav"), folder), run_dir, group),
                                        _local_copy(_clip_path(reference.get("png"), folder), run_dir, group),
                                        run_dir, caption=f'real {reference.get("genre")}: {reference.get("source")}'))
            wav = _local_copy(_clip_path(clip.get("wav"), folder), run_dir, group)
            png = _local_copy(_clip_path(clip.get("png"), folder), run_dir, group)
            caption = f'{clip.get("name", "")}: {clip.get("genre") or "generated"}, {_fmt(clip.get("seconds", ""))} s'
            cells.append(_clip_cell(wav, png, run_dir, caption=caption, judge=clip.get("judge"),
                                    problem=clip.get("problem", "")))
        out.append('<div class="clips">' + "\n".join(cells) + "</div>")
    out.append("</section>")
    return "\n".join(out)


PER_GENRE_COLUMNS = ("n_clips", "genre_accuracy", "clip_flatness", "flatness_ratio", "clip_onset_rate",
                     "real_onset_rate", "onset_rate_ratio")  # generation.json's judge_per_genre, in the page's order


def _with_interval(figures, key):
    """``figures[key]``, as "0.667 [0.488, 0.808]" when ``figures`` has its 95% interval ``<key>_interval``."""
    value, interval = figures.get(key), figures.get(f"{key}_interval")
    if value is None or not isinstance(interval, list) or len(interval) != 2:
        return value
    return f"{_fmt(value)} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _per_genre_table(per_genre):
    """generation.json's ``judge_per_genre`` as a genre x figure table (a figure it lacks shows empty; a figure
    with its 95% interval shows it in brackets)."""
    return _table([(genre,) + tuple(_with_interval(figures, c) if isinstance(figures, dict) else None
                                    for c in PER_GENRE_COLUMNS)
                   for genre, figures in per_genre.items()],
                  header=("genre",) + tuple(c.replace("_", " ") for c in PER_GENRE_COLUMNS), css="per-genre")


def _clip_path(recorded, folder):
    """Where a clip recorded in generation.json is now: its own folder first (the folder may have moved)."""
    if not recorded:
        return ""
    beside = os.path.join(folder, os.path.basename(recorded))
    return beside if os.path.isfile(beside) else recorded


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta{color:#666;margin:0 0 16px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
table.kv td:first-child{color:#555}.scroll{overflow-x:auto}
table.grid td{min-width:200px}table.grid th.genre{white-space:nowrap}
.clip{display:inline-block;margin:4px;vertical-align:top}.clip audio{width:200px;display:block}
.clip img{width:200px;display:block;margin-top:4px}.caption{font-size:13px;color:#444}
.problem{color:#b00;font-size:13px}.judge{color:#555;font-size:12px}
.chart svg{max-width:100%;height:auto}svg .title{font-size:14px;font-weight:600}svg .tick{font-size:11px;fill:#444}
svg .label{font-size:12px;fill:#333}svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#bbb}
nav a{margin-right:12px}
"""

# One player at a time: starting a clip pauses the others, so a row can be compared clip by clip.
SCRIPT = """
document.addEventListener('play', function (event) {
  document.querySelectorAll('audio').forEach(function (audio) { if (audio !== event.target) audio.pause(); });
}, true);
"""


def render_report(run_dir, generation_json=None, pending_row=None):
    """The page's HTML for ``run_dir`` (copies generated clips from outside it into ``report_files/``).

    pending_row  a metrics row not in metrics.csv yet (an ``on_evaluate`` callback runs before its row is
                 written), shown as the latest
    """
    config = _read_json(RunDir(run_dir).config_json) or {}
    model_info = _read_json(RunDir(run_dir).model_json) or {}
    evaluation = _read_json(RunDir(run_dir).evaluation_json)
    rows = rundir.read_metrics(run_dir)
    if pending_row is not None:
        rows = [r for r in rows if r["step"] < pending_row["step"]] + [pending_row]
    unigram, uniform = _baselines(run_dir, model_info, evaluation)
    sampled = samples.read_step_samples(run_dir)
    generation_paths = generation_files(run_dir, generation_json)
    name = os.path.basename(os.path.abspath(run_dir))
    updated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    latest = f", step {rows[-1]['step']}" if rows else ""
    sections = [("settings", "Settings", _settings_section(config, model_info)),
                ("loss", "Loss", _loss_section(rows, unigram, uniform)),
                ("evaluation", "Evaluation", _evaluation_section(evaluation)),
                ("judge", "Judge", _judge_section(rows)),
                ("samples", "Clips while training", _samples_section(run_dir, sampled)),
                ("generated", "Generated clips", _generated_section(run_dir, generation_paths))]
    nav = " ".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title, body in sections if body)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(name)}: Waveforms run report</title>", f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(name)}</h1>",
        f'<p class="meta">Waveforms run report{_e(latest)}; updated {_e(updated)}; '
        f'data: {_e(model_info.get("data_dir", config.get("data_dir", "")))}</p>',
        f"<nav>{nav}</nav>",
        *[body for _, _, body in sections if body],
        f"<script>{SCRIPT}</script>", "</body></html>", ""])


def write_report(run_dir, generation_json=None, pending_row=None):
    """Write ``<run_dir>/report.html`` atomically from what ``run_dir`` holds; return its path.

    generation_json  a generation.json to show besides those ``generations.json`` points at (optional)
    pending_row      the metrics row being written (see :func:`render_report`)
    """
    return write_text_atomic(os.path.join(run_dir, REPORT_NAME), render_report(run_dir, generation_json, pending_row))


# --- at training time: on_evaluate callbacks of local.train.loop.train (and the Spark trainer's epochs) ---------

def page_callback(evaluation):
    """An ``on_evaluate`` callback: rewrite the run's page with the evaluation's row (after the callbacks before
    it added their columns and clips, so put it last). Adds no column."""
    write_report(evaluation.run_dir, pending_row=evaluation.row)


def report_callbacks(model, run_dir, *, model_kind="wavenet", sample_every, sample_seconds, seed, eval_every=1,
                     judge_clips=None):
    """The ``on_evaluate`` callbacks that keep a training run's page: clips every ``sample_every`` steps
    (rounded to a multiple of ``eval_every``) and at the end (local.generate.samples.SamplingCallback; WaveNet runs only,
    and only when ``sample_every`` and ``sample_seconds`` are > 0), then the page (:func:`page_callback`).
    Both trainers call this.

    model        the model being trained; ``run_dir``'s model.json must be written already
    model_kind   "wavenet" samples clips; any other kind (e.g. a genre tagger) gets the page only
    judge_clips  optional judge of each step's clips (see local.generate.samples.SamplingCallback)
    """
    callbacks = []
    if model_kind == "wavenet" and sample_every > 0 and sample_seconds > 0:
        callbacks.append(samples.SamplingCallback(model, run_dir, sample_every=sample_every, seconds=sample_seconds,
                                                  seed=seed, eval_every=eval_every, judge_clips=judge_clips))
    return callbacks + [page_callback]
