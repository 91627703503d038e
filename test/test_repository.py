"""The repository stands alone: no tracked file names a path outside it, and local/'s imports form no cycle."""
import ast
import os
import re
import subprocess

from helpers import ROOT

# A relative path climbing out of the file's folder (../shared/x, ../../etc), or an absolute one under the
# folder that holds this checkout (a sibling checkout, a shared folder beside it).
RELATIVE_PATH = re.compile(r"(?:\.\./)+[\w.-][\w./-]*")


def tracked_text_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        path = os.path.join(ROOT, name)
        if not name or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" not in data[:8192]:  # text, not a fixture or a picture
            yield name, data.decode("utf-8", "replace")


def outside_paths(name, text, root=ROOT):
    """The paths in ``text`` (tracked file ``name``) that lead to something beside ``root``: [(line, path)].

    A relative path that climbs out of the repository into its parent folder and names something there
    (``../shared/CONTRACTS.md``), or an absolute path to such a thing. Hostile inputs that tests feed the
    code (``../../etc/passwd``) name nothing beside the repository and are not flagged.
    """
    root = os.path.abspath(root)
    parent = os.path.dirname(root)
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in RELATIVE_PATH.findall(line):
            target = os.path.normpath(os.path.join(root, os.path.dirname(name), match))
            if os.path.dirname(target) == parent or os.path.dirname(os.path.dirname(target)) == parent:
                beside = os.path.join(parent, os.path.relpath(target, parent).split(os.sep)[0])
                if beside != root and os.path.exists(beside):
                    found.append((number, match))
        for match in re.findall(re.escape(parent + os.sep) + r"[\w.-]+", line) if parent != os.sep else ():
            if match != root and os.path.exists(match):
                found.append((number, match))
    return found


def test_no_tracked_file_names_a_path_outside_the_repository():
    problems = [f"{name}:{line}: {path}" for name, text in tracked_text_files()
                for line, path in outside_paths(name, text)]
    assert not problems, "paths outside the repository:\n" + "\n".join(problems)


def test_the_outside_path_check_can_fail(tmp_path):
    root = tmp_path / "repo"
    os.makedirs(tmp_path / "shared")
    os.makedirs(root / "docs")
    assert outside_paths("README.md", "see ../shared/CONTRACTS.md", str(root)) == [(1, "../shared/CONTRACTS.md")]
    assert outside_paths("docs/x.md", "see ../README.md and ../../etc/passwd", str(root)) == []
    assert outside_paths("test/x.py", f'F = "{tmp_path}/shared/f.ogg"', str(root)) == [(1, f"{tmp_path}/shared")]
    assert outside_paths("aws/x.py", f'out_dir{os.sep}work{os.sep}x and {root}/local', str(root)) == []


def local_imports(package="local"):
    """{module: set of local modules it imports, anywhere in the file (top level or inside functions)}, modules
    named by their dotted path under ``package`` ("train.loop"; a package's own __init__ is "train")."""
    folder = os.path.join(ROOT, package)
    modules = {}
    for directory, _, files in os.walk(folder):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                parts = os.path.relpath(path, folder)[:-3].split(os.sep)
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                if name:
                    modules[name] = path
    graph = {}
    for module, path in sorted(modules.items()):
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                    node.module == package or node.module.startswith(package + ".")):
                base = node.module[len(package) + 1:]
                for alias in node.names:
                    full = f"{base}.{alias.name}" if base else alias.name
                    names.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                names.update(a.name[len(package) + 1:] for a in node.names if a.name.startswith(package + "."))
        graph[module] = {n for n in names if n and n != module}
    return graph


def package_imports(graph):
    """{package: set of other packages its modules import}, from :func:`local_imports`' module graph."""
    packages = {}
    for module, imported in graph.items():
        home = module.split(".")[0]
        packages.setdefault(home, set()).update(n.split(".")[0] for n in imported if n.split(".")[0] != home)
    return packages


def find_cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or [] when there is none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_import_graph_of_local_has_no_cycle():
    graph = local_imports()
    assert "model.wavenet" in graph["train.wavenet_task"]  # the graph was read
    cycle = find_cycle(graph)
    assert not cycle, "import cycle in local/: " + " -> ".join(cycle)
    packages = package_imports(graph)
    assert "model" in packages["train"]
    cycle = find_cycle(packages)
    assert not cycle, "import cycle between local/ packages: " + " -> ".join(cycle)


def test_each_package_imports_only_the_packages_below_it():
    from local import PACKAGES
    packages = package_imports(local_imports())
    assert sorted(p for p in packages if "." not in p) == sorted(PACKAGES)
    upward = [(p, q) for p, imported in packages.items() for q in imported
              if PACKAGES.index(q) > PACKAGES.index(p)]
    assert not upward, "a package imports one after it in local.PACKAGES: " + ", ".join(f"{p} -> {q}" for p, q in upward)
    # the check sees an upward arrow where there is one
    assert package_imports({"core.x": {"train.loop"}, "train.loop": set()}) == {"core": {"train"}, "train": set()}


def test_local_holds_packages_and_no_module_is_over_450_lines():
    loose = [f for f in os.listdir(os.path.join(ROOT, "local")) if f.endswith(".py") and f != "__init__.py"]
    assert not loose, f"modules directly under local/: {loose}"
    long = {}
    for directory, _, files in os.walk(os.path.join(ROOT, "local")):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                n_lines = sum(1 for _ in open(path, encoding="utf-8"))
                if n_lines > 450:
                    long[os.path.relpath(path, ROOT)] = n_lines
    assert not long, f"modules over 450 lines: {long}"


def test_each_package_lists_its_public_names_and_each_resolves():
    import importlib
    from local import PACKAGES
    for name in PACKAGES:
        package = importlib.import_module(f"local.{name}")
        assert package.__doc__ and "May import:" in package.__doc__, name
        assert package.__all__, name
        for public in package.__all__:
            assert getattr(package, public) is not None, f"local.{name}.{public}"


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def spelled_layout_names(names, skip=("local/store/layout.py",)):
    """{file: [names]} of the string constants in local/, aws/ and the run_ scripts that equal one of ``names``."""
    found = {}
    files = [os.path.join(d, f) for top in ("local", "aws") for d, _, fs in os.walk(os.path.join(ROOT, top))
             for f in fs if f.endswith(".py")]
    files += [os.path.join(ROOT, f) for f in os.listdir(ROOT) if f.startswith("run_") and f.endswith(".py")]
    for path in files:
        relative = os.path.relpath(path, ROOT)
        if relative in skip or os.path.basename(path) == "__init__.py":  # __all__ names functions
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        hits = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names})
        if hits:
            found[relative] = hits
    return found


def test_the_run_directory_and_dataset_folder_names_are_spelled_in_one_module():
    from local.store.layout import DatasetDir, RunDir
    # file names (and the folders no dict key shares); "config.json" is every stage's, core.config's default
    names = {value for kind in (RunDir, DatasetDir) for key, value in vars(kind).items()
             if key.isupper() and isinstance(value, str) and value != "config.json"
             and ("." in value or value in ("checkpoints", "tensorboard", "report_files"))}
    assert {"model.keras", "model.json", "evaluation.json", "dataset.json", "failures.csv"} <= names
    assert spelled_layout_names(names) == {}
    assert spelled_layout_names(names, skip=()) == {"local/store/layout.py": sorted(names)}  # the check can fail
