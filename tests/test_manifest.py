"""The in-memory manifest: root digest, digest counts and file count stay exact under any edits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_neo.sync.manifest import ROOT_MOD, Entry, Manifest, contribution

PATHS = st.sampled_from([f"d{i // 4}/f{i}.py" for i in range(24)] + ["d0", "d1", "l"])
ENTRIES = st.one_of(
    st.none(),
    st.builds(lambda ref: Entry("f", 0o644, ref), st.sampled_from([f"{i:064x}" for i in range(6)])),
    st.just(Entry("d", 0, "")),
    st.just(Entry("l", 0, "d0/f0.py")),
)


def expected(m: Manifest) -> tuple[int, set[str], int]:
    root = sum(contribution(p, e) for p, e in m.entries.items()) % ROOT_MOD
    refs = {e.ref for e in m.entries.values() if e.kind == "f"}
    return root, refs, sum(e.kind == "d" for e in m.entries.values())


@settings(max_examples=300)
@given(st.lists(st.tuples(PATHS, ENTRIES), max_size=400))
def test_any_sequence_of_puts_keeps_root_counts_and_held_digests_exact(
    puts: list[tuple[str, Entry | None]],
) -> None:
    m = Manifest()
    for i, (path, entry) in enumerate(puts):
        m.put(path, entry)
        if i % 50 == 0:
            m = m.copy()  # a scan works on a copy, which must carry the same state
    root, refs, dirs = expected(m)
    assert m.root == root and m.dirs == dirs
    assert {d for d in m.digests if m.holds(d)} == refs
    assert all(m.digests[r] == sum(e.ref == r for e in m.entries.values() if e.kind == "f") for r in refs)
    assert m.unheld == sum(1 for n in m.digests.values() if n == 0)


def test_an_edit_loop_leaves_the_manifest_cheap_to_copy_and_bounded() -> None:
    """10,000 edits of one file: the zero-count digests are compacted, not kept forever."""
    m = Manifest()
    for i in range(1000):
        m.put(f"f{i}.py", Entry("f", 0o644, f"{i:064x}"))
    for i in range(10_000):
        m.put("f0.py", Entry("f", 0o644, f"{10**6 + i:064x}"))
    assert len(m.digests) < 1000 * 1.5 and m.files == 1000
    assert m.holds(f"{10**6 + 9999:064x}") and not m.holds(f"{10**6 + 9998:064x}")
