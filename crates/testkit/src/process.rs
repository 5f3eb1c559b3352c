//! Child processes of the tests (nginx, the router, Python scripts), stopped and reaped on drop,
//! also when a test panics. Each runs in its own process group: killing the group takes what the
//! child forked (nginx workers) with it, so nothing is left running with parent pid 1.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// nginx: graceful shutdown (the master reaps its workers), then fast shutdown for workers that
/// hold on to open connections.
pub const NGINX_STOP: &[i32] = &[libc::SIGQUIT, libc::SIGTERM];
/// Everything else.
pub const TERMINATE: &[i32] = &[libc::SIGTERM];

pub struct ProcessGroup {
    child: Child,
    /// Sent to the leader in turn, each followed by `grace` to exit, before the group is killed.
    stop_signals: &'static [i32],
    grace: Duration,
    /// Set once stopped: the group id may belong to someone else afterwards.
    stopped: Option<Option<ExitStatus>>,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command, stop_signals: &'static [i32], grace: Duration) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = cmd.process_group(0).spawn()?;
        Ok(Self { child, stop_signals, grace, stopped: None })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// The stop signals, then SIGKILL to the whole group; reaps the leader. Blocks for at most
    /// the grace periods plus a moment; calling it again is harmless.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.stopped {
            return status;
        }
        let pgid = self.child.id() as libc::pid_t;
        for &signal in self.stop_signals {
            if self.leader_exited() {
                break;
            }
            // SAFETY: signalling our own child, not reaped yet (its pid is still ours).
            unsafe { libc::kill(pgid, signal) };
            let deadline = Instant::now() + self.grace;
            // Wait without reaping: while the leader is a zombie its pid (the group id) cannot be
            // reused, so the group kill below cannot hit an unrelated process.
            while !self.leader_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // SAFETY: the group is ours: its leader is our child, not reaped yet, or the group still
        // has members that keep its id reserved.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let status = self.child.wait().ok();
        self.stopped = Some(status);
        status
    }

    /// The leader has exited (zombie or reaped), without reaping it.
    fn leader_exited(&self) -> bool {
        // SAFETY: waitid only writes into `info`, which is zeroed and ours.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let rc = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) };
        // SAFETY: si_pid is valid to read for WEXITED results; it stays 0 while the child runs.
        rc != 0 || unsafe { info.si_pid() } != 0
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}
