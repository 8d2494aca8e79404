"""The shared cache store: seeds a sandbox from it, and commits a tool's writes back into it.

This package runs as a program inside each Pants sandbox (`cli.py`: `setup`, then `commit`), so it
uses the standard library only; pantsd imports the same modules for the lifecycle goals. It never
fails the build: every problem becomes a warning in the report, the tool's own result stands.

Start-up cost: every tool run starts it twice, so it (and the tools' policies, which it loads)
imports at run time neither `typing` (its names only under TYPE_CHECKING) nor `inspect`,
`dataclasses`, `importlib.util` or `shutil`: together ~20 ms a process on Pants' Python 3.9. The
engine ships its bytecode too (`engine.compile_store`): compiling it is another ~20 ms.

Layout of one cache scope (a directory inside the Pants named cache; `layout.py`):

    objects/ab/<sha256>   immutable file contents, content-addressed; never modified once there
    entries/ab/<sha256 of the group name>
                          one JSON record per *group* of tool files: {"format": F, "scope": s,
                          "group": g, "files": {relpath: [object, size]}, "stamps": {object:
                          [inode, mtime_ns]}}. A group is the files that must travel together
                          (mypy's <module>.meta.json + .data.json), as the tool's policy says
                          (`policy.py`).
                          A symlink the policy keeps (LINKS: relative, inside its cache's top
                          directory) is a file whose object holds its target, listed in the
                          record's "links"; setup makes it a symlink again, after checking it.
    lock                  flock(2) lock file serializing commits (`locking.py`)
    generation            a counter, bumped by every commit
    index.json            what each entry holds and weighs, for the byte budget (`index.py`)
    scope.json            what the scope is for (tool, scope parts, buildroot): cache-info, import
    runs.log              one line per run: entries reused untouched / written (`runlog.py`)

Why this shape (the protocol: `seed.py`, `commit.py`):
- A group's record is replaced with one rename(2), so a reader sees a group's files either all old
  or all new, never meta from one run and data from another -- with or without the lock. Objects
  are written under a unique temp name in their own directory, then renamed, so no reader ever sees
  a partial file, and two writers of the same content write the same bytes.
- Merging is per group: a commit only replaces the groups its run wrote, so concurrent runs never
  lose each other's work; for the same group the last commit wins, and either version is whole.
  A file the policy merges (MERGES: one file every run rewrites whole, e.g. pytest's record of
  failed tests) is instead read, merged with this run's change and written back under the lock
  (commit.merge_locked): the one place where the lock is needed for more than ordering. If flock
  silently does nothing, two runs merging at once can lose one run's change to that file (the
  file is still whole; the next run of the same tests records it again).
- Readers take no lock. A group whose object vanished (replaced and deleted by a commit racing with
  us) or that fails validation is a miss for this run: it costs work, never correctness.
- The lock (flock(2): excludes flock(1) and Python's filelock on the same file; fcntl.lockf does
  not) makes the generation check-and-bump atomic, and keeps deletions of superseded objects from
  racing with a commit that references them. If flock silently does nothing (some network
  filesystems), the worst case is a group that becomes a miss.
- Least-recently-used eviction keeps a scope within its byte budget. Last use is the record's
  mtime: a commit writes it, and marks (at most every TOUCH_AFTER seconds) each group the tool
  read or replaced. The tool is given every group, so "given" says nothing; "read" is seen in the
  atime of the file we linked in: linking sets its ctime, and under relatime (Linux's default) the
  next read then moves its atime. On a noatime mount no read is ever seen: then every group given
  counts as used. Eviction deletes the record first, then objects no record names any more: a
  run that read the record just before becomes a miss for that group (an object gone when it
  links it), never a torn group.
- The sandbox gets hardlinks of the objects: tools replace their cache files by rename. An object
  is verified before it is given: by the inode and mtime its record's commit saw (`stamps`; any
  write to it moves the mtime), or else by hashing its content. A file the tool writes in place
  is given as a copy (the policy's COPIES); if a tool writes one in place through its link anyway
  (root ignores the objects' read-only mode), commit sees the same inode changed, warns, and under
  the lock removes the object and every record naming it, if its content no longer matches.
- Every name read from disk (index, records, manifests, archives) is checked to be a name inside
  the cache (`layout.is_safe_relpath`, `layout.HEX64`) before a path is made of it: a crafted file
  can make a miss, never a read or a deletion outside the cache.
"""

# The package's modules, as the engine ships them into the sandbox (a directory `store/`).
SANDBOX_MODULES = (
    "__init__", "faults", "layout", "locking", "report", "index", "runlog", "policy", "spec", "seed", "commit", "cli",
)
