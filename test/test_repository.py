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
    """{module: set of local modules it imports, anywhere in the file (top level or inside functions)}."""
    folder = os.path.join(ROOT, package)
    graph = {}
    for file in sorted(os.listdir(folder)):
        if not file.endswith(".py") or file == "__init__.py":
            continue
        module = file[:-3]
        tree = ast.parse(open(os.path.join(folder, file), encoding="utf-8").read())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == package:
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
                names.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[1] for a in node.names if a.name.startswith(package + "."))
        graph[module] = {n for n in names if n != module}
    return graph


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
    assert "training" in graph and "wavenet" in graph["training"] or graph  # the graph was read
    cycle = find_cycle(graph)
    assert not cycle, "import cycle in local/: " + " -> ".join(cycle)


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
