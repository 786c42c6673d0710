//! The fake machines' HTTP server: every request head gets 200 with the machine id;
//! answers can be held (the connection is then not read either), and each machine's
//! open connections are counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// What the machines' HTTP servers share with the test.
pub(super) struct Answers {
    /// While `true`, a request's answer waits, and its connection is not read.
    pub(super) held: watch::Sender<bool>,
    /// Per machine: connections open now, the most ever open at once, and all ever
    /// accepted.
    pub(super) open: Mutex<HashMap<String, (usize, usize, usize)>>,
}

impl Answers {
    pub(super) fn counts(&self, machine_id: &str) -> (usize, usize, usize) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(machine_id).copied().unwrap_or_default()
    }

    /// Counts a connection open until the guard is dropped.
    fn opened(self: &Arc<Answers>, machine_id: &str) -> OpenConnection {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (now, most, accepted) = open.entry(machine_id.to_string()).or_default();
        *now += 1;
        *most = (*most).max(*now);
        *accepted += 1;
        OpenConnection {
            answers: self.clone(),
            machine_id: machine_id.to_string(),
        }
    }

    async fn wait_while_held(&self) {
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
    }
}

struct OpenConnection {
    answers: Arc<Answers>,
    machine_id: String,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut open = self.answers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((now, _, _)) = open.get_mut(&self.machine_id) {
            *now -= 1;
        }
    }
}

/// A minimal HTTP/1.1 server: every request head gets 200 with the machine id.
pub(super) async fn answer_http(
    listener: tokio::net::TcpListener,
    machine_id: String,
    answers: Arc<Answers>,
) {
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{machine_id}",
        machine_id.len()
    );
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let (response, answers) = (response.clone(), answers.clone());
        let open = answers.opened(&machine_id);
        tokio::spawn(async move {
            let _open = open;
            let mut buf = vec![0u8; 16 * 1024];
            let mut have = 0;
            loop {
                match stream.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                while let Some(end) = find_head_end(&buf[..have]) {
                    answers.wait_while_held().await;
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.copy_within(end..have, 0);
                    have -= end;
                }
                if have == buf.len() {
                    return; // a head larger than the buffer: not a client of ours
                }
            }
        });
    }
}

fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}
