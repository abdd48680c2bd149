"""The lab's Vagrantfile, rendered from `templates/Vagrantfile.j2` and the lab's meta.json.

guestlab drives Vagrant with it, and keeps it readable for students who want to see how
their lab was made; every value reaches Ruby as a single-quoted literal.
"""

from __future__ import annotations

from typing import Any

from orchestrator.backends.contract import LabRef
from orchestrator.backends.vagrant.host import domain_prefix, lab_dir, write_whole
from orchestrator.backends.vagrant.libvirt import POOL


def ruby(value: Any) -> str:
    """A Ruby literal: single-quoted strings, so `#{...}` in a name is never interpolated."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(ruby(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def render_vagrantfile(context: dict[str, Any]) -> str:
    """The Vagrantfile's text for `context` (the lab, its provider, network and machines)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.backends.vagrant", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Ruby, not HTML: values go through the `ruby` filter instead
    )
    env.filters["ruby"] = ruby
    env.filters["oneline"] = lambda v: " ".join(str(v).split())
    return env.get_template("Vagrantfile.j2").render(**context)


def write_vagrantfile(lab: LabRef, meta: dict[str, Any]) -> None:
    """Render the lab's Vagrantfile again from its meta.json (nothing before the lab has
    one)."""
    from orchestrator.images.box import insecure_public_key

    if not meta:
        return
    root = lab_dir(lab)
    machines = [
        {"name": name, **m, "prefix": domain_prefix(lab)} for name, m in meta["machines"].items()
    ]
    text = render_vagrantfile(
        {
            "lab": lab,
            "provider": meta["provider"],
            "driver": meta["driver"],
            "kvm_reason": meta["kvm_reason"],
            "pool": POOL,
            "network": meta["network"],
            "key": str(root / "id_ed25519"),
            "insecure_key": str(insecure_public_key())[: -len(".pub")],
            "machines": machines,
        }
    )
    write_whole(root / "Vagrantfile", text)
