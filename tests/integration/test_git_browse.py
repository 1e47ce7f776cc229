"""The repository browser with real git: :mod:`pavedroad.git.browse` on a bare
repository made by the service and filled by a real ``git push``, and the portal's
Repositories pages over it (files at a ref, nested folders, text, binary and large
files, READMEs, commits and their pages, branches with ``/``, tags, an empty
repository), with hostile refs and paths refused before git sees them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from integration_support import csrf_in

from pavedroad.core import audit
from pavedroad.core.errors import InputError, NotFoundError
from pavedroad.git import browse

OWNER = "checkout-team"
HISTORY = 34  # commits on top of the first: two pages of the commit list
BIG = 600 * 1024
PAGE = {"accept": "text/html"}


@pytest.fixture
def database_seed() -> str:
    return "demo"


def run_git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Tess Ter", "-c", "user.email=tess@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write(work: Path, name: str, content: str | bytes) -> None:
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working copy: main with a README, nested folders, a binary, a large file and
    a symbolic link, then a long history; a tag v1.0 and a branch feature/x."""
    work = tmp_path_factory.mktemp("source")
    run_git("init", "-q", "--initial-branch=main", cwd=work)
    write(work, "README.md", "# Orders\n\nHello **world**. <script>alert('x')</script>\n")
    write(work, "src/app.py", "print('hello')\nprint('world')\n")
    write(work, "docs/guide/intro.md", "# Intro\n\nNested *markdown*.\n")
    write(work, "docs/guide/README", "plain readme in a folder\n")
    write(work, "data.bin", b"\x89PNG\x00\x01\x02binary")
    write(work, "big.txt", "x" * BIG)
    write(work, "with space.txt", "spaced\n")
    os.symlink("../../../etc/passwd", work / "passwd-link")
    run_git("add", "-A", cwd=work)
    run_git("commit", "-qm", "First commit\n\nThe body of the first commit.", cwd=work)
    run_git("tag", "-a", "v1.0", "-m", "release 1.0", cwd=work)
    for number in range(HISTORY):
        write(work, "counter.txt", f"{number}\n")
        run_git("add", "counter.txt", cwd=work)
        run_git("commit", "-qm", f"Count {number}", cwd=work)
    run_git("checkout", "-qb", "feature/x", cwd=work)
    write(work, "feature.txt", "only on the feature branch\n")
    run_git("add", "feature.txt", cwd=work)
    run_git("commit", "-qm", "A feature", cwd=work)
    run_git("checkout", "-q", "main", cwd=work)
    return work


@pytest.fixture
def app(make_app: Any, make_settings: Any) -> Any:
    return make_app(make_settings())


@pytest.fixture
def client(app: Any) -> Any:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def repo(app: Any, source: Path) -> Path:
    """checkout-team/orders, with the source pushed into it."""
    service = app.state.git
    service.create(OWNER, "orders", "tess", "Orders service")
    bare = service.path(service.repo(OWNER, "orders"))
    run_git(
        "push", "-q", str(bare), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=source
    )
    return bare


def page(client: TestClient, url: str, status: int = 200) -> str:
    response = client.get(url, headers=PAGE)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def csrf(client: TestClient) -> str:
    return csrf_in(page(client, "/repos"))


# -- browse.py -----------------------------------------------------------------------------


def test_refs_list_branches_and_tags_with_their_commits(repo: Path, source: Path) -> None:
    refs = browse.refs(repo)
    assert [b.name for b in refs.branches] == ["feature/x", "main"]
    assert refs.head == "main" and refs.default == "main"
    (tag,) = refs.tags
    assert tag.name == "v1.0"
    first = run_git("rev-list", "--max-parents=0", "main", cwd=source).strip()
    assert tag.sha == first  # the annotated tag peeled to its commit
    main = next(b for b in refs.branches if b.name == "main")
    assert main.sha == run_git("rev-parse", "main", cwd=source).strip()


def test_tree_lists_folders_files_and_links_without_following(repo: Path) -> None:
    root = browse.tree(repo, "main")
    kinds = {e.name: e.type for e in root.entries}
    assert kinds == {
        "docs": "tree",
        "src": "tree",
        "README.md": "blob",
        "big.txt": "blob",
        "counter.txt": "blob",
        "data.bin": "blob",
        "passwd-link": "symlink",
        "with space.txt": "blob",
    }
    assert [e.name for e in root.entries][:2] == ["docs", "src"]  # folders first
    assert next(e for e in root.entries if e.name == "big.txt").size == BIG
    nested = browse.tree(repo, "main", "docs/guide/")
    assert nested.path == "docs/guide"
    assert {e.path for e in nested.entries} == {"docs/guide/intro.md", "docs/guide/README"}
    link = browse.blob(repo, "main", "passwd-link")
    assert link.symlink and link.content == b"../../../etc/passwd"
    with pytest.raises(browse.NotATreeError):
        browse.tree(repo, "main", "src/app.py")
    with pytest.raises(NotFoundError):
        browse.tree(repo, "main", "nowhere")
    with pytest.raises(NotFoundError):  # a path through a symbolic link is not followed
        browse.tree(repo, "main", "passwd-link/x")


def test_blob_text_binary_and_too_large(repo: Path) -> None:
    text = browse.blob(repo, "main", "src/app.py")
    assert text.text == "print('hello')\nprint('world')\n"
    assert not text.binary and not text.too_large and text.size == len(text.content)
    binary = browse.blob(repo, "main", "data.bin")
    assert binary.binary and not binary.too_large
    big = browse.blob(repo, "main", "big.txt")
    assert big.too_large and big.size == BIG and big.content == b"" and not big.binary
    small_cap = browse.blob(repo, "main", "src/app.py", max_bytes=5)
    assert small_cap.too_large
    with pytest.raises(browse.NotABlobError):
        browse.blob(repo, "main", "docs")
    with pytest.raises(NotFoundError):
        browse.blob(repo, "main", "docs/missing.md")


def test_commits_page_through_history(repo: Path) -> None:
    first_page = browse.commits(repo, "main", limit=10)
    assert [c.subject for c in first_page[:2]] == [f"Count {HISTORY - 1}", f"Count {HISTORY - 2}"]
    assert first_page[0].author_name == "Tess Ter"
    assert first_page[0].author_email == "tess@example.com"
    assert first_page[0].date.tzinfo is not None
    assert first_page[0].sha.startswith(first_page[0].short)
    last = browse.commits(repo, "main", limit=10, skip=HISTORY)
    assert [c.subject for c in last] == ["First commit"]
    assert browse.commits(repo, "main", limit=10, skip=HISTORY + 1) == []
    assert browse.commits(repo, "feature/x", limit=1)[0].subject == "A feature"


def test_commit_detail_has_message_parents_and_changed_files(repo: Path) -> None:
    first = browse.commits(repo, "main", limit=1, skip=HISTORY)[0]
    detail = browse.commit(repo, first.sha)
    assert detail.subject == "First commit"
    assert detail.body == "The body of the first commit."
    assert detail.parents == []
    files = {f.path: f for f in detail.files}
    assert set(files) >= {"README.md", "src/app.py", "data.bin", "passwd-link", "big.txt"}
    assert files["src/app.py"].status == "A"
    assert (files["src/app.py"].added, files["src/app.py"].deleted) == (2, 0)
    assert files["data.bin"].added is None  # binary: no line counts
    second = browse.commit(repo, browse.commits(repo, "main", limit=1)[0].short)
    assert second.parents and [(f.path, f.status) for f in second.files] == [("counter.txt", "M")]
    assert (second.added, second.deleted) == (1, 1)


def test_readme_is_found_per_folder(repo: Path) -> None:
    root = browse.readme(repo, "main")
    assert root is not None and root.path == "README.md" and root.is_markdown
    nested = browse.readme(repo, "main", "docs/guide")
    assert nested is not None and nested.path == "docs/guide/README" and not nested.is_markdown
    assert browse.readme(repo, "main", "src") is None


def test_an_empty_repository_has_nothing_everywhere(app: Any) -> None:
    app.state.git.create(OWNER, "blank", "tess")
    bare = app.state.git.path(app.state.git.repo(OWNER, "blank"))
    refs = browse.refs(bare)
    assert refs.empty and refs.default is None and refs.head is None
    for read in (
        lambda: browse.tree(bare, "main"),
        lambda: browse.commits(bare, "main"),
        lambda: browse.readme(bare, "main"),
        lambda: browse.blob(bare, "main", "README.md"),
    ):
        with pytest.raises(NotFoundError):
            read()


@pytest.mark.parametrize(
    "ref",
    [
        "-n",
        "--upload-pack=touch x",
        "--output=/tmp/pwned",
        "main..feature",
        "a b",
        "x\x00y",
        "/abs",
        "main:README.md",
        "HEAD@{1}",
        "",
        "main/",
        "x.lock",
    ],
)
def test_hostile_refs_are_refused(repo: Path, ref: str) -> None:
    with pytest.raises(InputError):
        browse.tree(repo, ref)


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "/etc/passwd", "src/../..", "./src", "a\x00b", "-p", "src//app.py"]
)
def test_hostile_paths_are_refused(repo: Path, path: str) -> None:
    with pytest.raises(InputError):
        browse.blob(repo, "main", path)


# -- the pages -------------------------------------------------------------------------------


def test_repository_page_shows_files_readme_escaped_and_pushes(
    client: TestClient, repo: Path
) -> None:
    html = page(client, f"/repos/{OWNER}/orders")
    assert "http://" in html and f"/git/{OWNER}/orders.git" in html  # the clone URL
    assert 'data-copy="clone-url"' in html
    assert 'data-testid="readme-body"' in html and "<strong>world</strong>" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert f'href="/repos/{OWNER}/orders/tree/docs?ref=main"' in html
    assert f'href="/repos/{OWNER}/orders/blob/with%20space.txt?ref=main"' in html
    assert 'data-type="symlink" data-name="passwd-link"' in html
    assert 'data-testid="push"' in html  # the hook's spool, read by the page
    assert "Count 33" in html  # the last commit
    assert '<option value="feature/x">' in html and '<option value="v1.0">' in html
    assert 'data-testid="delete-repo"' in html  # sign-in is off: anyone may


def test_nested_folders_and_their_readme(client: TestClient, repo: Path) -> None:
    html = page(client, f"/repos/{OWNER}/orders/tree/docs/guide?ref=main")
    assert 'data-name="intro.md"' in html
    assert "plain readme in a folder" in html
    assert f'href="/repos/{OWNER}/orders/tree/docs?ref=main"' in html  # breadcrumb and ..
    # a file asked for as a folder goes to the file, and the other way round
    response = client.get(
        f"/repos/{OWNER}/orders/tree/src/app.py?ref=main", headers=PAGE, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/repos/{OWNER}/orders/blob/src/app.py?ref=main"
    response = client.get(
        f"/repos/{OWNER}/orders/blob/docs?ref=main", headers=PAGE, follow_redirects=False
    )
    assert response.headers["location"] == f"/repos/{OWNER}/orders/tree/docs?ref=main"


def test_file_pages_text_binary_large_markdown_and_links(client: TestClient, repo: Path) -> None:
    html = page(client, f"/repos/{OWNER}/orders/blob/src/app.py?ref=main")
    assert 'id="L2"' in html and "print(&#39;world&#39;)" in html
    assert 'data-testid="binary"' in page(client, f"/repos/{OWNER}/orders/blob/data.bin")
    large = page(client, f"/repos/{OWNER}/orders/blob/big.txt")
    assert 'data-testid="too-large"' in large and "600.0 KiB" in large
    assert "xxxxxxxxxx" not in large
    preview = page(client, f"/repos/{OWNER}/orders/blob/README.md?ref=main")
    assert 'data-testid="markdown-preview"' in preview and "<strong>world</strong>" in preview
    assert "<script>alert" not in preview
    source = page(client, f"/repos/{OWNER}/orders/blob/README.md?ref=main&view=source")
    assert 'data-testid="blob-source"' in source and "**world**" in source
    assert "<script>alert" not in source and "&lt;script&gt;" in source
    link = page(client, f"/repos/{OWNER}/orders/blob/passwd-link")
    assert 'data-testid="symlink-target"' in link and "../../../etc/passwd" in link
    assert "root:" not in link
    spaced = page(client, f"/repos/{OWNER}/orders/blob/with%20space.txt")
    assert "spaced" in spaced


def test_commits_are_paged_and_a_commit_has_its_page(client: TestClient, repo: Path) -> None:
    first = page(client, f"/repos/{OWNER}/orders/commits")
    assert first.count('data-testid="commit-item"') == 30
    assert 'data-testid="older"' in first and 'data-testid="newer"' not in first
    second = page(client, f"/repos/{OWNER}/orders/commits?ref=main&page=2")
    assert second.count('data-testid="commit-item"') == HISTORY + 1 - 30
    assert "First commit" in second and 'data-testid="newer"' in second
    assert 'data-testid="older"' not in second
    beyond = page(client, f"/repos/{OWNER}/orders/commits?ref=main&page=9")
    assert 'data-testid="no-commits"' in beyond
    page(client, f"/repos/{OWNER}/orders/commits?page=0", 400)
    page(client, f"/repos/{OWNER}/orders/commits?page=x", 400)
    sha = re.search(
        r'data-sha="([0-9a-f]{40})"[^>]*>\s*<div class="commit-main">\s*<a[^>]*>'
        r"First commit",
        second,
    )
    assert sha, "the first commit is listed with its sha"
    detail = page(client, f"/repos/{OWNER}/orders/commit/{sha.group(1)[:10]}")
    assert "First commit" in detail and "The body of the first commit." in detail
    assert 'data-path="src/app.py" data-status="A"' in detail
    assert "+2" in detail and "Tess Ter" in detail
    assert f'href="/repos/{OWNER}/orders/blob/src/app.py?ref={sha.group(1)}"' in detail
    page(client, f"/repos/{OWNER}/orders/commit/{'0' * 40}", 404)


def test_branches_with_a_slash_and_tags(client: TestClient, repo: Path) -> None:
    feature = page(client, f"/repos/{OWNER}/orders?ref=feature/x")
    assert 'data-name="feature.txt"' in feature
    assert '<option value="feature/x" selected>' in feature
    blob = page(client, f"/repos/{OWNER}/orders/blob/feature.txt?ref=feature%2Fx")
    assert "only on the feature branch" in blob
    page(client, f"/repos/{OWNER}/orders/blob/feature.txt?ref=main", 404)
    tagged = page(client, f"/repos/{OWNER}/orders?ref=v1.0")
    assert 'data-name="counter.txt"' not in tagged and 'data-name="README.md"' in tagged
    commits = page(client, f"/repos/{OWNER}/orders/commits?ref=v1.0")
    assert commits.count('data-testid="commit-item"') == 1
    page(client, f"/repos/{OWNER}/orders?ref=no-such-branch", 404)


def test_an_empty_repository_page_shows_how_to_push(client: TestClient, app: Any) -> None:
    app.state.git.create(OWNER, "blank", "tess", "Nothing yet")
    html = page(client, f"/repos/{OWNER}/blank")
    assert 'data-testid="empty-repo"' in html
    assert "git clone http://" in html and f"/git/{OWNER}/blank.git" in html
    assert 'data-testid="ref-switch"' not in html
    assert 'data-testid="no-commits"' in page(client, f"/repos/{OWNER}/blank/commits")
    page(client, f"/repos/{OWNER}/blank/tree/src", 404)
    page(client, f"/repos/{OWNER}/blank/blob/README.md", 404)
    page(client, f"/repos/{OWNER}/blank?ref=main", 404)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/repos/{o}/orders?ref=--upload-pack=x", 400),
        ("/repos/{o}/orders?ref=-n", 400),
        ("/repos/{o}/orders/commits?ref=--output={pwned}", 400),
        ("/repos/{o}/orders/blob/README.md?ref=--output={pwned}", 400),
        ("/repos/{o}/orders/tree/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/repos/{o}/orders/blob/..%2f..%2fetc%2fpasswd", 400),
        ("/repos/{o}/orders/blob/src%00/app.py", 400),
        ("/repos/{o}/orders/blob/README.md%00", 400),
        ("/repos/{o}/orders/blob//etc/passwd", 400),
        ("/repos/{o}/orders/tree/-n", 400),
        ("/repos/{o}/orders/commit/--output=x", 400),
        ("/repos/{o}/orders/commit/--output={pwned}", 404),  # no such route
        ("/repos/{o}/orders/commit/HEAD", 400),
        ("/repos/{o}/orders/blob/nothing-here.txt", 404),
        ("/repos/{o}/nope", 404),
        ("/repos/nobody/orders/commits", 404),
    ],
)
def test_hostile_urls_get_a_page_and_run_nothing(
    client: TestClient, repo: Path, tmp_path: Path, url: str, status: int
) -> None:
    pwned = tmp_path / "pwned"
    html = page(client, url.format(o=OWNER, pwned=pwned), status)
    assert "Traceback" not in html
    assert not pwned.exists()


def test_create_and_delete_from_the_pages(client: TestClient, app: Any) -> None:
    token = csrf(client)
    listing = page(client, "/repos")
    assert 'href="/repos"' in listing and "Repositories" in listing  # the side navigation
    assert '<option value="group:default/checkout-team"' in listing  # sign-in off: any group
    bad = client.post(
        "/repos",
        data={"csrf_token": token, "owner": "group:default/checkout-team", "name": "-bad"},
        headers=PAGE,
    )
    assert bad.status_code == 400 and 'data-testid="repo-error"' in bad.text
    assert 'value="-bad"' in bad.text  # the form keeps what was typed
    unknown = client.post(
        "/repos", data={"csrf_token": token, "owner": "no-such-team", "name": "x"}, headers=PAGE
    )
    assert unknown.status_code == 404 and "not a group or user" in unknown.text
    forged = client.post("/repos", data={"owner": "checkout-team", "name": "forged"}, headers=PAGE)
    assert forged.status_code == 403
    made = client.post(
        "/repos",
        data={
            "csrf_token": token,
            "owner": "group:default/checkout-team",
            "name": "made-here",
            "description": "From the portal",
        },
        headers=PAGE,
        follow_redirects=False,
    )
    assert made.status_code == 303
    assert made.headers["location"] == f"/repos/{OWNER}/made-here?notice=created"
    assert app.state.git.repo(OWNER, "made-here").description == "From the portal"
    (created,) = audit.search(app.state.db, action="git.repo.create", outcome="success")
    assert created["target"] == f"{OWNER}/made-here"
    assert "made-here" in page(client, "/repos")
    group_page = page(client, "/catalog/default/group/checkout-team")
    assert (
        'data-testid="group-repos"' in group_page and "/repos/checkout-team/made-here" in group_page
    )
    again = client.post(
        "/repos",
        data={"csrf_token": token, "owner": "group:default/checkout-team", "name": "made-here"},
        headers=PAGE,
    )
    assert again.status_code == 409
    wrong = client.post(
        f"/repos/{OWNER}/made-here/delete",
        data={"csrf_token": token, "confirm": "something-else"},
        headers=PAGE,
    )
    assert wrong.status_code == 400 and "nothing was deleted" in wrong.text
    assert app.state.git.repo(OWNER, "made-here")
    gone = client.post(
        f"/repos/{OWNER}/made-here/delete",
        data={"csrf_token": token, "confirm": "made-here"},
        headers=PAGE,
        follow_redirects=False,
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/repos?notice=deleted"
    with pytest.raises(NotFoundError):
        app.state.git.repo(OWNER, "made-here")
    page(client, f"/repos/{OWNER}/made-here", 404)
