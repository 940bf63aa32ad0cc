//! Zero-downtime restarts: a new process takes the listening sockets over from the
//! running one, so a restart or an upgrade refuses no connection.
//!
//! A running proxy listens on a Unix socket in its state directory
//! ([`SOCKET`], mode 0600). A new process with the same configuration connects to it
//! before binding anything and asks for the listeners of its two addresses. The
//! running one stops accepting, hands its line over (memory mode: a last save, and
//! the state directory unlocked), then sends the two listening sockets themselves
//! (`SCM_RIGHTS`) and drains its open connections. The kernel socket never closes,
//! so connections that arrive meanwhile wait in its backlog for the new process
//! instead of being refused. If nothing answers on the Unix socket (no process, or
//! one that was killed), the new process binds as usual.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

/// The Unix socket in the state directory.
pub const SOCKET: &str = "handover.sock";

/// How long a new process waits for the running one to hand over (it may have a
/// large line to save first).
const WAIT: Duration = Duration::from_secs(30);

/// Why a handover failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// Talking to the running process failed.
    #[error("handover socket {0}: {1}")]
    Io(String, std::io::Error),
    /// The running process said no.
    #[error("the running process did not hand over: {0}")]
    Refused(String),
}

/// The two listeners of a proxy.
pub struct Listeners {
    /// The public listener.
    pub public: TcpListener,
    /// The admin listener.
    pub admin: TcpListener,
}

fn request(public: SocketAddr, admin: SocketAddr) -> String {
    format!("take-over {public} {admin}\n")
}

/// Asks the process running with state directory `dir` for its listeners on
/// `public` and `admin`. `Ok(None)` when no process answers there.
pub async fn take_over(
    dir: &Path,
    public: SocketAddr,
    admin: SocketAddr,
) -> Result<Option<Listeners>, HandoverError> {
    let path = dir.join(SOCKET);
    let shown = path.display().to_string();
    let io = move |e| HandoverError::Io(shown.clone(), e);
    let received = tokio::task::spawn_blocking(move || receive(&path, public, admin))
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let Some((public_std, admin_std)) = received.map_err(|e| match e {
        Received::Io(e) => io(e),
        Received::Refused(why) => HandoverError::Refused(why),
    })?
    else {
        return Ok(None);
    };
    let tokio = |l: std::net::TcpListener| {
        l.set_nonblocking(true)?;
        TcpListener::from_std(l)
    };
    Ok(Some(Listeners {
        public: tokio(public_std).map_err(&io)?,
        admin: tokio(admin_std).map_err(&io)?,
    }))
}

enum Received {
    Io(std::io::Error),
    Refused(String),
}

type Pair = (std::net::TcpListener, std::net::TcpListener);

/// The blocking half of [`take_over`].
fn receive(path: &Path, public: SocketAddr, admin: SocketAddr) -> Result<Option<Pair>, Received> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Received::Io(e)),
    };
    stream.set_read_timeout(Some(WAIT)).map_err(Received::Io)?;
    stream
        .write_all(request(public, admin).as_bytes())
        .map_err(Received::Io)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut text = [0u8; 512];
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut text)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| Received::Io(e.into()))?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let mut answer = String::from_utf8_lossy(&text[..got.bytes]).into_owned();
    if !answer.ends_with('\n') {
        // The rest of a long refusal.
        let _ = stream.take(4096).read_to_string(&mut answer);
    }
    let answer = answer.trim();
    if answer != "ok" || fds.len() != 2 {
        return Err(Received::Refused(answer.to_owned()));
    }
    let mut fds = fds.into_iter();
    let (p, a) = (fds.next(), fds.next());
    let pair = p.zip(a).map(|(p, a)| {
        (
            std::net::TcpListener::from(p),
            std::net::TcpListener::from(a),
        )
    });
    let (p, a) = pair.ok_or_else(|| Received::Refused("no sockets".into()))?;
    let addr = |l: &std::net::TcpListener| l.local_addr().map_err(Received::Io);
    if addr(&p)? != public || addr(&a)? != admin {
        return Err(Received::Refused(
            "sockets for other addresses were sent".into(),
        ));
    }
    Ok(Some((p, a)))
}

/// A running proxy's offer to hand its listeners over.
pub struct Offer {
    path: PathBuf,
    listener: UnixListener,
    public: Arc<TcpListener>,
    admin: Arc<TcpListener>,
}

impl Offer {
    /// Listens on `dir/`[`SOCKET`] (replacing a stale file; owner-only access).
    pub fn bind(
        dir: &Path,
        public: Arc<TcpListener>,
        admin: Arc<TcpListener>,
    ) -> Result<Self, HandoverError> {
        let path = dir.join(SOCKET);
        let io = |e| HandoverError::Io(path.display().to_string(), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let listener = UnixListener::bind(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Self {
            path,
            listener,
            public,
            admin,
        })
    }

    /// Waits for a new process to ask, runs `prepare` (stop accepting, hand the line
    /// over), then sends it the listeners. Returns once they are sent; a request
    /// for other addresses is refused and waited past.
    pub async fn serve<F, Fut>(self, prepare: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let ours = |l: &TcpListener| l.local_addr().ok();
        let expected = ours(&self.public)
            .zip(ours(&self.admin))
            .map(|(p, a)| request(p, a));
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
            let stream = reader.into_inner();
            if !matches!(read, Ok(Ok(_))) {
                continue;
            }
            if Some(&line) != expected.as_ref() {
                tracing::warn!(
                    asked = line.trim(),
                    "a new process asked for other listeners; not handing over"
                );
                let mut s = stream;
                let _ = tokio::io::AsyncWriteExt::write_all(
                    &mut s,
                    b"no: the running process listens on other addresses\n",
                )
                .await;
                continue;
            }
            prepare().await;
            match self.send(stream) {
                Ok(()) => {
                    tracing::info!(socket = %self.path.display(), "handed the listening sockets over to a new process")
                }
                Err(e) => tracing::error!(error = %e, "could not hand the listening sockets over"),
            }
            return;
        }
    }

    fn send(&self, stream: tokio::net::UnixStream) -> std::io::Result<()> {
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        let fds = [self.public.as_fd(), self.admin.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("ancillary buffer too small"));
        }
        rustix::net::sendmsg(
            &stream,
            &[IoSlice::new(b"ok\n")],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }
}
