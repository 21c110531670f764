//! Zero-downtime upgrade: the running proxy hands every listening socket (and its control
//! socket) to a successor started with the same state directory.
//!
//! Protocol on `<state-dir>/handoff.sock` (stream, same uid or root only):
//! 1. old → new: a 4-byte big-endian length and an [`Offer`] (JSON), then one message per
//!    socket: one byte carrying one fd by SCM_RIGHTS, in the offer's order;
//! 2. new: serves them (the kernel's accept queue is shared, so nothing is refused or reset
//!    while both hold them), then → old: `ok\n`;
//! 3. old: stops accepting, finishes its in-flight requests, gives TCP and upgraded
//!    connections their `drain_timeout`, exits 0.
//!
//! The control socket's fd travels too, so its path never disappears: requests that arrive
//! in between wait in its backlog for the successor.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use sluice_common::names::ServiceName;
use sluice_common::proxy::RouteSpec;

/// The offer's format version.
pub const VERSION: u32 = 1;

/// One route in an offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferedRoute {
    /// The service.
    pub service: ServiceName,
    /// Its live spec.
    pub spec: RouteSpec,
    /// Its generation.
    pub generation: u64,
    /// Index of its listener among the fds sent (none if it had none).
    pub fd: Option<usize>,
}

/// What the old process offers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// [`VERSION`].
    pub version: u32,
    /// Every route.
    pub routes: Vec<OfferedRoute>,
    /// Index of the control socket's fd.
    pub control: usize,
    /// Index of the metrics listener's fd, if there is one.
    #[serde(default)]
    pub metrics: Option<usize>,
    /// How many fds follow.
    pub fds: usize,
}

/// The handoff socket's path in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("handoff.sock")
}

/// What a successor received.
#[derive(Debug)]
pub struct Received {
    /// The offer.
    pub offer: Offer,
    /// The fds, in order.
    pub fds: Vec<OwnedFd>,
    /// The connection to answer `ok` on.
    pub conn: UnixStream,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the offer and its fds (blocking).
pub fn send(conn: &mut UnixStream, offer: &Offer, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let json = serde_json::to_vec(offer).map_err(std::io::Error::other)?;
    conn.write_all(&(json.len() as u32).to_be_bytes())?;
    conn.write_all(&json)?;
    for fd in fds {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let one = [*fd];
        if !cmsg.push(SendAncillaryMessage::ScmRights(&one)) {
            return Err(std::io::Error::other("ancillary buffer too small"));
        }
        sendmsg(
            conn.as_fd(),
            &[IoSlice::new(b"F")],
            &mut cmsg,
            SendFlags::empty(),
        )?;
    }
    Ok(())
}

/// Waits for the successor's `ok` (blocking).
pub fn await_ok(conn: &mut UnixStream, timeout: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 3];
    conn.read_exact(&mut buf)?;
    if &buf != b"ok\n" {
        return Err(std::io::Error::other(
            "successor answered something else than ok",
        ));
    }
    Ok(())
}

/// Connects to a running proxy's handoff socket and receives its sockets (blocking).
/// `Ok(None)`: no proxy is running there.
pub fn receive(state_dir: &Path) -> std::io::Result<Option<Received>> {
    let mut conn = match UnixStream::connect(path(state_dir)) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 64 * 1024 * 1024 {
        return Err(std::io::Error::other("offer too large"));
    }
    let mut json = vec![0u8; len];
    conn.read_exact(&mut json)?;
    let offer: Offer = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    if offer.version != VERSION {
        return Err(std::io::Error::other(format!(
            "offer version {}",
            offer.version
        )));
    }
    let mut fds = Vec::with_capacity(offer.fds);
    for _ in 0..offer.fds {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let got = recvmsg(
            conn.as_fd(),
            &mut [IoSliceMut::new(&mut byte)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if got.bytes != 1 {
            return Err(std::io::Error::other("handoff closed early"));
        }
        let mut one = None;
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(r) = m {
                for fd in r {
                    one.get_or_insert(fd);
                }
            }
        }
        fds.push(one.ok_or_else(|| std::io::Error::other("a handoff message carried no fd"))?);
    }
    Ok(Some(Received { offer, fds, conn }))
}
