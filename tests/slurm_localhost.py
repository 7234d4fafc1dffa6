"""A real one-node Slurm cluster on localhost, every file of it in one folder: for tests and perf scripts.

Debian's ``slurm-wlm`` 22.05 with ``munge`` (authentication), ``slurmdbd`` and ``mariadb-server``
(accounting). Accounting is not optional for rsbench: submitit learns a job's state only from
``sacct`` (``SlurmInfoWatcher``). Without slurmdbd, ``sacct`` fails ("accounting storage is disabled"),
submitit logs "Bypassing sacct error" and reports the state ``UNKNOWN``, which it counts as not done;
a job that ends without a result pickle (``scancel``, time limit, node failure) then looks like it is
still running, for ever. slurmdbd stores in MySQL/MariaDB only (22.05 has no file-based accounting
storage), so a MariaDB server runs here too: an empty data folder with ``--skip-grant-tables`` starts in
about a second (``mariadb-install-db`` would add 5 s and 100 MB for user tables slurmdbd does not need).

Every daemon runs in the foreground as a child of this process (its own session), on ports picked free,
with its state, spool, pid and log files under ``root`` (munge's socket in a folder of its own under $TMPDIR);
nothing is read from or written to /etc, /run or /var. Clients find the cluster through ``SLURM_CONF``
(``env``): slurmdbd.conf, plugstack.conf and cgroup.conf are looked up next to it.

    with LocalSlurm(tmp_dir) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)

``python tests/slurm_localhost.py DIR`` starts one and waits (Ctrl-C stops it), for trying things by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sacct", "scancel", "sinfo", "srun")
INSTALL_HINT = "apt-get install slurm-wlm slurmdbd munge mariadb-server (Debian/Ubuntu; scripts/install.sh " \
               "does it with RSBENCH_SLURM=1)"  # fmt: skip
#: Where Debian puts the daemons (/usr/sbin is not on every user's PATH).
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None)


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if find_binary(name) is None]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free now (held open together so that they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmStartError(RuntimeError):
    pass


class LocalSlurm:
    """munged, mariadbd, slurmdbd, slurmctld and slurmd under ``root``; ``stop()`` ends them and their jobs."""

    cluster_name = "rsbench"
    node = "localhost"

    def __init__(self, root: str | Path, cpus: int | None = None, kill_wait_s: int = 5,
                 requeue_delay_s: int = 120) -> None:  # fmt: skip
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.kill_wait_s, self.requeue_delay_s = kill_wait_s, requeue_delay_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.socket_dir: Path | None = None
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        # A sweep started from inside a Slurm job must not take that job's settings for its own jobs.
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if key != "SLURM_CONF":
                del self.env[key]

    # -- configuration ---------------------------------------------------------------------------------
    def _write_configs(self) -> None:
        r = self.root
        for sub in ("etc", "munge", "db", "dbd", "ctld", "slurmd", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        # munged wants every folder above its socket open to all (pytest's tmp folders are 0700), and a socket
        # path has at most 107 bytes: the socket gets a short folder of its own, removed by stop().
        self.socket_dir = Path(tempfile.mkdtemp(prefix="rsbench-munge-"))
        self.socket_dir.chmod(0o711)
        self.ctld_port, self.slurmd_port, self.dbd_port, self.db_port = free_ports(4)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = self.socket_dir / "munge.socket"
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        # cred_expire is also how long a requeued job waits before it may start again: 120 s by default.
        ctld_auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket},cred_expire={self.requeue_delay_s}\n"
        self.conf.write_text(
            f"ClusterName={self.cluster_name}\nSlurmctldHost={self.node}\n{ctld_auth}CredType=cred/munge\n"
            f"SlurmUser=root\nSlurmdUser=root\nSlurmctldPort={self.ctld_port}\nSlurmdPort={self.slurmd_port}\n"
            f"StateSaveLocation={r / 'ctld'}\nSlurmdSpoolDir={r / 'slurmd'}\n"
            f"SlurmctldPidFile={r / 'ctld' / 'slurmctld.pid'}\nSlurmdPidFile={r / 'slurmd' / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}\nSlurmdLogFile={r / 'log' / 'slurmd.log'}\n"
            # No cgroups: they need a writable cgroup tree (not in every container) and change nothing here.
            "ProctrackType=proctrack/pgid\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "MpiDefault=none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\nReturnToService=2\n"
            # The node has the CPUs written here even where the machine has fewer (a test may need two jobs at once).
            "SlurmdParameters=config_overrides\n"
            # SIGTERM to SIGKILL after scancel / a time limit: Slurm's default of 30 s would only slow tests down.
            f"KillWait={self.kill_wait_s}\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost={self.node}\n"
            f"AccountingStoragePort={self.dbd_port}\nJobCompType=jobcomp/none\nMailProg=/bin/true\n"
            # slurmctld's connection to slurmdbd takes its munge socket from here, not from AuthInfo.
            f"AccountingStoragePass={self.munge_socket}\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN\n"
            f"PartitionName=local Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        (r / "etc" / "plugstack.conf").write_text("")  # else /etc/slurm/plugstack.conf would be read
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost={self.node}\nDbdPort={self.dbd_port}\nSlurmUser=root\n"
            f"PidFile={r / 'dbd' / 'slurmdbd.pid'}\nLogFile={r / 'log' / 'slurmdbd.log'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            "StorageUser=root\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read (it may hold the database password)

    # -- processes -------------------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen([find_binary(name), *args], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        finally:
            log.close()

    def _wait(self, what: str, ready, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmStartError(f"{name} exited with {proc.returncode} while waiting for {what}; "
                                          f"see {self.root / 'log'}/{name}.*\n{self.tail(name)}")  # fmt: skip
            if time.monotonic() > deadline:
                raise SlurmStartError(f"timed out after {timeout:.0f} s waiting for {what}; see {self.root / 'log'}")
            time.sleep(0.2)

    def tail(self, name: str, lines: int = 20) -> str:
        text = ""
        for path in sorted((self.root / "log").glob(f"{name}.*")):
            text += "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        return text

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run([find_binary(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout)  # fmt: skip

    def _ok(self, *argv: str) -> bool:
        try:
            return self.run(*argv, check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self) -> LocalSlurm:
        missing = missing_binaries()
        if missing:
            raise SlurmStartError(f"not installed: {', '.join(missing)}; {INSTALL_HINT}")
        self._write_configs()
        r = self.root
        try:
            self._spawn("munged", "-F", f"--key-file={r / 'munge' / 'munge.key'}", f"--socket={self.munge_socket}",
                        f"--pid-file={r / 'munge' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'munged.seed'}",
                        f"--log-file={r / 'log' / 'munged.log'}")  # fmt: skip
            self._spawn("mariadbd", "--no-defaults", f"--datadir={r / 'db'}", f"--socket={r / 'db' / 'mysqld.sock'}",
                        f"--port={self.db_port}", "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
                        "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                        f"--tmpdir={r / 'db'}", f"--pid-file={r / 'db' / 'mysqld.pid'}",
                        f"--log-error={r / 'log' / 'mariadbd.log'}")  # fmt: skip
            self._wait("munged", self.munge_socket.exists)
            self._wait("mariadbd", lambda: _port_open(self.db_port))
            self._spawn("slurmdbd", "-D")
            self._wait("slurmdbd", lambda: _port_open(self.dbd_port))
            self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
            self._wait("slurmctld", lambda: self._ok("squeue", "-h"))
            self._spawn("slurmd", "-D", "-N", self.node, "-f", str(self.conf))
            self._wait("the node to be idle", lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False).stdout)
            # slurmctld adds its cluster to the database when it first registers; sacct works from then on.
            self._wait("accounting (sacct)", lambda: self._ok("sacct", "-n", "-X"))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel every job, then end the daemons (TERM, then KILL) and anything left of the jobs."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--user=root", "--full", check=False, timeout=10)
                deadline = time.monotonic() + self.kill_wait_s + 10
                while self.run("squeue", "-h", check=False, timeout=10).stdout.strip() and time.monotonic() < deadline:
                    time.sleep(0.5)
            except subprocess.TimeoutExpired:
                pass
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def leftover_pids(self) -> list[int]:
        """Processes started with this cluster's ``SLURM_CONF`` in their environment, this one and its parents
        aside: whatever is left of the daemons, their job steps (``slurmstepd``, inherited from slurmd) and the
        jobs' processes, and client commands run with ``env``."""
        mine = f"SLURM_CONF={self.conf}".encode()
        ancestors, pid = set(), os.getpid()
        while pid > 1:
            ancestors.add(pid)
            pid = _parent(pid)
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) in ancestors:
                continue
            try:
                if mine in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:  # gone, or not ours to read
                continue
        return found

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    with LocalSlurm(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rsbench-slurm") as cluster:
        print(f"export SLURM_CONF={cluster.conf}  # Ctrl-C stops the cluster", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
