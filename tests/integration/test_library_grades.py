"""The library's grades for real: wrong answers, runtime-only answers and hand-made
imitations of the result fail, each on a real engine (issue 16's false passes).

One lab per scenario, reset between cases. The labs run on the engines whose lanes are
shortest (nspawn and LXD) but for one case that only Docker shows; `guestlab prove` of
every lab on every backend it declares is test_scenarios.py's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.lab import Lab
from orchestrator.report import Report
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id


class Running:
    """One lab of a library scenario, up for a module's cases."""

    def __init__(self, scenario: str, backend: str) -> None:
        engine(backend)
        self.store = Store()
        self.lab: Lab = lifecycle.prepare(scenario, student_id(), backend)
        lifecycle.up(self.lab, self.store, lifecycle.Silent())

    def run(self, machine: str, script: str) -> str:
        res = self.lab.exec(self.lab.ref, machine, ["sh", "-c", script], timeout=120)
        assert res.ok, res
        return res.stdout

    def check(self, *tasks: str, reboot: bool = True) -> Report:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        return lifecycle.check(self.lab, record, self.store, list(tasks), reboot=reboot)

    def reset(self) -> None:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        lifecycle.reset(self.lab, record, self.store, lifecycle.Silent())

    def solve(self, *tasks: str) -> None:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        lifecycle.solve(self.lab, record, self.store, list(tasks))

    def close(self) -> None:
        teardown.down(self.lab.ref, [b.name for b in self.lab.backends], self.store)
        self.store.close()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def failed(report: Report, task: str) -> dict[str, str]:
    """The failed checks of one task: name -> message."""
    found = next(t for t in report.tasks if t.id == task)
    return {c.name: c.message for c in found.checks if not c.passed}


def passed(report: Report, task: str) -> bool:
    return next(t for t in report.tasks if t.id == task).passed


@pytest.fixture(scope="module")
def template() -> Iterator[Running]:
    with Running("template-seal", "nspawn") as lab:
        yield lab


#: the drop-in template-seal used to teach: its ExecStartPre runs after Debian's `sshd -t`,
#: which fails without host keys, so SSH never starts on a clone
OLD_DROP_IN = (
    "rm -f /etc/ssh/ssh_host_*; mkdir -p /etc/systemd/system/ssh.service.d;"
    " printf '[Service]\\nExecStartPre=/usr/bin/ssh-keygen -A\\n'"
    " > /etc/systemd/system/ssh.service.d/host-keys.conf; systemctl daemon-reload"
)


@pytest.mark.nspawn
def test_template_seal_the_old_drop_in_fails_because_ssh_never_starts_on_a_clone(
    template: Running,
) -> None:
    template.reset()
    template.run("template", OLD_DROP_IN)
    # the text the old check looked for is there
    template.run(
        "template", "systemctl cat ssh.service | grep -q 'ExecStartPre=/usr/bin/ssh-keygen -A'"
    )
    report = template.check("ssh-host-keys")
    wrong = failed(report, "ssh-host-keys")
    assert "SSH runs on a new clone after its boot" in wrong
    assert "ExecStartPre" in wrong["SSH runs on a new clone after its boot"]
    assert template.run("template", "ls /etc/ssh/ | grep -c ssh_host_ || true").strip() == "0"


@pytest.mark.nspawn
def test_template_seal_keys_kept_behind_a_drop_in_fail_as_shared_keys(template: Running) -> None:
    """A hand-made imitation: the drop-in's text, the template's keys left in place."""
    template.reset()
    template.run(
        "template",
        "mkdir -p /etc/systemd/system/ssh.service.d; printf '[Service]\\nExecStartPre=\\n"
        "ExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t\\n'"
        " > /etc/systemd/system/ssh.service.d/host-keys.conf",
    )
    wrong = failed(template.check("ssh-host-keys"), "ssh-host-keys")
    assert set(wrong) == {
        "the template has no SSH host keys",
        "two new clones have different SSH host keys",
    }


@pytest.mark.nspawn
def test_template_seal_machine_id_wrong_answers_fail(template: Running) -> None:
    # plausible: the file emptied, D-Bus's copy left behind, which systemd copies back
    template.reset()
    template.run("template", "truncate -s 0 /etc/machine-id")
    wrong = failed(template.check("machine-id"), "machine-id")
    assert "a new clone does not boot with the template's old machine ID" in wrong
    # imitation: a new ID written by hand, the same one for every clone
    template.reset()
    template.run(
        "template",
        "rm -f /var/lib/dbus/machine-id; echo 0123456789abcdef0123456789abcdef > /etc/machine-id",
    )
    wrong = failed(template.check("machine-id"), "machine-id")
    assert "two new clones of the template boot with two different machine IDs" in wrong
    # plausible: the file deleted (a read-only root at boot could not create it)
    template.reset()
    template.run("template", "rm -f /etc/machine-id /var/lib/dbus/machine-id")
    wrong = failed(template.check("machine-id"), "machine-id")
    assert "the template still has an /etc/machine-id file" in wrong


@pytest.mark.docker
def test_template_seal_a_fresh_id_at_every_boot_is_not_kept() -> None:
    """Runtime-only: /etc/machine-id a link into /run, so each boot makes another ID. On
    Docker the clones boot and only `kept` tells (systemd-nspawn does not boot them)."""
    with Running("template-seal", "docker") as lab:
        lab.run(
            "template",
            "rm -f /var/lib/dbus/machine-id /etc/machine-id; ln -s /run/machine-id /etc/machine-id",
        )
        report = lab.check("machine-id")
        assert list(failed(report, "machine-id")) == [
            "a clone keeps the ID of its first boot at its second boot"
        ]
        assert report.rebooted == ["clone-1", "clone-2"]  # the template is never rebooted


@pytest.mark.nspawn
def test_template_seal_the_solution_passes_and_leaves_no_clone(template: Running) -> None:
    template.reset()
    template.solve()
    report = template.check()
    assert report.score == report.max_score, report
    assert report.rebooted == ["clone-1", "clone-2"]  # the template itself is not rebooted
    found = template.lab.backend.find(template.lab.ref)[template.lab.ref.key]
    assert sorted(found.machines) == ["template"]
    unproven = template.check("machine-id", reboot=False)
    assert not passed(unproven, "machine-id") and unproven.tasks[0].unproven


@pytest.fixture(scope="module")
def cloud() -> Iterator[Running]:
    with Running("cloud-init-user-data", "lxd") as lab:
        yield lab


@pytest.mark.lxd
def test_cloud_init_by_hand_earns_nothing_but_the_valid_file(cloud: Running) -> None:
    """A hand-made imitation: the user, the file and the first-boot note made in node."""
    cloud.reset()
    user = cloud.lab.params["user"]
    app = cloud.lab.params["app"]
    cloud.run(
        "node",
        f"printf '#cloud-config\\n{{}}\\n' > /root/user-data;"
        f" useradd -m -s /bin/bash -G sudo {user};"
        f" mkdir -p /home/{user}/.ssh /etc/{app} /var/lib/{app};"
        f" cp /root/{user}_ed25519.pub /home/{user}/.ssh/authorized_keys;"
        f" echo token={cloud.lab.params['token']} > /etc/{app}/app.conf;"
        f" chmod 640 /etc/{app}/app.conf; hostname > /var/lib/{app}/first-boot",
    )
    report = cloud.check()
    assert [t.id for t in report.tasks if t.passed] == ["valid-user-data"]


@pytest.mark.lxd
def test_cloud_init_a_solved_lab_whose_user_data_is_emptied_loses_its_points(
    cloud: Running,
) -> None:
    """Runtime-only: lab-boot ran the right file, then the file was emptied."""
    cloud.reset()
    cloud.solve()
    solved = cloud.check()
    assert solved.score == solved.max_score, solved
    cloud.run("node", "lab-boot && printf '#cloud-config\\n{}\\n' > /root/user-data")
    report = cloud.check()
    assert [t.id for t in report.tasks if t.passed] == ["valid-user-data"]
    hostname = cloud.lab.params["hostname"]
    messages = " ".join(m for t in report.tasks for m in failed(report, t.id).values())
    assert hostname not in messages  # no message gives the answer away


@pytest.fixture(scope="module")
def inspect() -> Iterator[Running]:
    with Running("machine-id-inspect", "lxd") as lab:
        yield lab


@pytest.mark.lxd
def test_machine_id_inspect_a_hand_written_report_and_a_fake_dmidecode_fail(
    inspect: Running,
) -> None:
    inspect.reset()
    machine_id = inspect.lab.params["machine_id"]
    # the two lines the old checks looked for, typed by hand
    inspect.run(
        "guest",
        f"printf 'Machine ID: {machine_id}\\nVirtualization: lxc\\n' > /root/hostnamectl.txt",
    )
    # a dmidecode that makes up a UUID, and that UUID as the answer
    uuid = "4c4c4544-0042-3510-8051-b4c04f563432"
    inspect.run(
        "guest",
        f"printf '#!/bin/sh\\necho {uuid}\\n' > /usr/local/sbin/dmidecode;"
        " chmod +x /usr/local/sbin/dmidecode; rm -f /usr/sbin/dmidecode;"
        f" echo {uuid} > /root/dmi-uuid; printf 'dmidecode\\nlshw\\n' > /root/needs-vm",
    )
    report = inspect.check("hostnamectl-report", "firmware-view")
    assert list(failed(report, "hostnamectl-report")) == [
        "the saved report is what hostnamectl prints in this guest"
    ]
    firmware = failed(report, "firmware-view")
    assert "/root/dmi-uuid holds what dmidecode can tell here" in firmware, firmware
    # and the fake itself is named where a check's text names the tool
    assert any("tampered: /usr/local/sbin/dmidecode" in m for m in firmware.values()), firmware


@pytest.mark.lxd
def test_machine_id_inspect_says_what_the_virtualization_line_says(inspect: Running) -> None:
    inspect.reset()
    inspect.run(
        "guest",
        "hostnamectl | sed 's/Virtualization: .*/Virtualization: kvm/' > /root/hostnamectl.txt",
    )
    wrong = failed(inspect.check("hostnamectl-report"), "hostnamectl-report")
    said = wrong["the saved report shows how this guest is virtualized"]
    assert said == "the Virtualization line of the saved report says kvm; this machine is lxc."


@pytest.mark.nspawn
def test_machine_id_clone_a_bind_mounted_id_is_gone_after_the_reboot() -> None:
    """Runtime-only: a new ID bind-mounted over both files passes until the next boot."""
    with Running("machine-id-clone", "nspawn") as lab:
        lab.run(
            "clone",
            "od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' > /run/new-id; echo >> /run/new-id;"
            " mount --bind /run/new-id /etc/machine-id;"
            " mount --bind /run/new-id /var/lib/dbus/machine-id",
        )
        before = lab.check("unique-id", reboot=False).tasks[0]
        assert not before.passed
        assert before.unproven and all(c.passed for c in before.checks)  # it fools the eye
        assert not passed(lab.check("unique-id"), "unique-id")


@pytest.mark.lxd
def test_docker_basics_another_image_tagged_tiny_is_not_the_loaded_one() -> None:
    """A hand-made imitation: the lab's other image tagged tiny:1.0 instead of a load."""
    with Running("docker-basics", "lxd") as lab:
        lab.run("dockerhost", "docker tag legacy:0.9 tiny:1.0")
        wrong = failed(lab.check("load-image"), "load-image")
        assert list(wrong) == ["tiny:1.0 is the image saved in /root/images/tiny-1.0.tar"]
        lab.run("dockerhost", "docker rmi tiny:1.0 && docker load -i /root/images/tiny-1.0.tar")
        assert passed(lab.check("load-image"), "load-image")


@pytest.mark.lxd
def test_nspawn_machine_a_hand_written_answer_in_the_tree_is_not_a_run() -> None:
    """A hand-made imitation: the answer written into the guest's tree from outside."""
    with Running("nspawn-machine", "lxd") as lab:
        guest = lab.lab.params["guest"]
        lab.run("host", f"echo systemd-nspawn > /var/lib/machines/{guest}/root/detect-virt")
        wrong = failed(lab.check("run-command"), "run-command")
        assert list(wrong) == [
            "systemd-nspawn ran the guest's tree (systemd-machined registered it)"
        ]
        lab.solve("run-command")
        assert passed(lab.check("run-command"), "run-command")


@pytest.mark.lxd
def test_lxd_first_container_a_new_launch_with_the_same_limit_is_no_copy() -> None:
    """A plausible wrong answer: a new container from the image, given the original's
    memory limit and a snapshot of the same name."""
    with Running("lxd-first-container", "lxd") as lab:
        lab.solve("launch", "limit-memory", "snapshot")
        p = lab.lab.params
        lab.run(
            "lxdhost",
            f"lxc launch tiny {p['copy']} -c limits.memory={p['memory']} >/dev/null 2>&1;"
            f" lxc snapshot {p['copy']} {p['snap']}",
        )
        wrong = failed(lab.check("copy"), "copy")
        assert list(wrong) == [f"{p['copy']} carries the snapshot {p['snap']} of {p['name']}"]
        lab.run("lxdhost", f"lxc delete -f {p['copy']}")
        lab.solve("copy")
        assert passed(lab.check("copy"), "copy")
        _copy_machine_id_cases(lab)


def _copy_machine_id_cases(lab: Running) -> None:
    """copy-machine-id's wrong answers, on a lab whose copy is made: the original's ID
    changed instead, a UUID with its dashes, a `cat` in the copy that prints a new ID, and a
    new ID mounted over the file in the running copy."""
    p = lab.lab.params
    copy, name = p["copy"], p["name"]
    lab.run("lxdhost", f"dbus-uuidgen > /tmp/id && lxc file push /tmp/id {name}/etc/machine-id")
    wrong = failed(lab.check("copy-machine-id"), "copy-machine-id")
    assert list(wrong) == ["the original keeps its machine ID"]
    lab.run(
        "lxdhost",
        f"printf '%s\\n' {p['machine_id']} > /tmp/id && lxc file push /tmp/id {name}/etc/machine-id",
    )
    lab.run(
        "lxdhost", f"lxc exec {copy} -- sh -c 'cat /proc/sys/kernel/random/uuid > /etc/machine-id'"
    )
    wrong = failed(lab.check("copy-machine-id"), "copy-machine-id")
    assert list(wrong) == ["the copy's machine ID is well formed"]
    # an imitation: the file left as it was, the copy's `cat` lying about it
    lab.run(
        "lxdhost",
        f"printf '%s\\n' {p['machine_id']} > /tmp/id && lxc file push /tmp/id {copy}/etc/machine-id"
        f' && lxc exec {copy} -- sh -c \'rm /bin/cat && printf "#!/bin/sh\\necho %s\\n" '
        "$(tr -d - < /proc/sys/kernel/random/uuid) > /bin/cat && chmod +x /bin/cat'",
    )
    wrong = failed(lab.check("copy-machine-id"), "copy-machine-id")
    assert list(wrong) == ["the copy's machine ID differs from the original's"]
    # runtime only: a new ID mounted over the file in the running copy, gone at its restart
    lab.run(
        "lxdhost",
        f"lxc exec {copy} -- sh -c 'tr -d - < /proc/sys/kernel/random/uuid > /tmp/id"
        " && mount --bind /tmp/id /etc/machine-id'",
    )
    wrong = failed(lab.check("copy-machine-id"), "copy-machine-id")
    assert list(wrong) == ["the copy's machine ID differs from the original's"]
    lab.run("lxdhost", f"lxc restart {copy}")
    lab.solve("copy-machine-id")
    assert passed(lab.check("copy-machine-id"), "copy-machine-id")
