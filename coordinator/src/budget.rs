//! A bound on the request bytes the coordinator holds for its clients.
//!
//! tonic buffers a whole message (up to `MAX_MESSAGE_BYTES`, 16 MiB) before a handler sees
//! it, and a connection may have 16 requests in flight: one authenticated client sending
//! large messages slowly (never the last byte) could make the coordinator hold 256 MiB per
//! connection, and more with more connections. Every request body is metered here instead:
//! before a body is read on, its client (the certificate it authenticated with) and the
//! coordinator as a whole must each have a share of their budget free. A client over its
//! budget is not refused; its bodies are simply not read until its earlier ones are done,
//! so HTTP/2 flow control stops it at the window, and other clients go on.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Bytes, Service};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Bytes of request bodies one client may have read and not yet consumed: a largest message
/// and room for its small requests (heartbeats, fetches) beside it.
pub const PER_CLIENT_BYTES: usize = fedrisk_proto::MAX_MESSAGE_BYTES + 1024 * 1024;
/// Bytes of request bodies all clients together may have read and not yet consumed.
pub const TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Budget is taken in chunks of this size; no HTTP/2 DATA frame is larger (the default
/// maximum frame size, which the server keeps).
const CHUNK: usize = 16 * 1024;

/// The budgets, shared by every connection.
pub struct BodyBudget {
    total: Arc<Semaphore>,
    total_bytes: usize,
    per_client: usize,
    clients: Mutex<HashMap<[u8; 32], Arc<Semaphore>>>,
}

impl BodyBudget {
    pub fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            total: Arc::new(Semaphore::new(total)),
            total_bytes: total,
            per_client,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The budget of the client that authenticated with certificate `leaf` (all requests
    /// without a certificate share one).
    fn client(&self, leaf: Option<&[u8]>) -> Arc<Semaphore> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = leaf.map(|l| Sha256::digest(l).into()).unwrap_or([0; 32]);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() > 10_000 {
            // Forget idle clients' budgets (nothing of theirs in flight).
            clients.retain(|_, s| Arc::strong_count(s) > 1);
        }
        clients
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
            .clone()
    }

    /// Bytes of the overall budget free now.
    pub fn total_available(&self) -> usize {
        self.total.available_permits()
    }
}

/// The tower layer that meters every request body.
#[derive(Clone)]
pub struct BudgetLayer(pub Arc<BodyBudget>);

impl<S> tower_layer::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner,
            budget: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Arc<BodyBudget>,
}

impl<S, ResBody> Service<Request<tonic::body::Body>> for Budgeted<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let leaf = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .and_then(|c| c.first().map(|l| l.as_ref().to_vec()));
        let client = self.budget.client(leaf.as_deref());
        let (parts, body) = request.into_parts();
        let cap = self.budget.per_client.min(self.budget.total_bytes);
        let body =
            tonic::body::Body::new(Metered::new(body, self.budget.total.clone(), client, cap));
        self.inner.call(Request::from_parts(parts, body))
    }
}

type Acquiring = Pin<Box<dyn Future<Output = Option<[OwnedSemaphorePermit; 2]>> + Send>>;

/// Takes `bytes` of the client's budget, then of the overall one: a client over its budget
/// waits without holding any of the overall budget. None once the server is going down.
fn acquire(client: Arc<Semaphore>, total: Arc<Semaphore>, bytes: usize) -> Acquiring {
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    Box::pin(async move {
        let mine = client.acquire_many_owned(bytes).await.ok()?;
        let all = total.acquire_many_owned(bytes).await.ok()?;
        Some([mine, all])
    })
}

/// Where a metered body is.
enum Phase {
    /// Before its first frame: the gRPC message's 5-byte prefix gives its length.
    Start,
    /// Taking the budget of the whole message, its first frame held back meanwhile. All at
    /// once, never piecemeal: 16 half-read messages of one client holding its budget
    /// between them would wait for each other for ever.
    Whole(Acquiring, Frame<Bytes>, usize),
    /// Within the message's budget; `left` bytes of it remain.
    Budgeted { left: usize },
    /// Beyond the declared message (a malformed body): budget is taken per chunk.
    Chunked,
}

/// A request body that reads on only while its client and the coordinator have budget,
/// and gives it back when dropped (tonic drops it once the message is decoded).
pub struct Metered<B> {
    inner: B,
    total: Arc<Semaphore>,
    client: Arc<Semaphore>,
    /// The most one acquisition may ask: what the client's budget holds.
    cap: usize,
    phase: Phase,
    /// Chunk budget held but not yet filled with received bytes (`Phase::Chunked`).
    credit: usize,
    acquiring: Option<Acquiring>,
    held: Vec<[OwnedSemaphorePermit; 2]>,
}

impl<B> Metered<B> {
    /// `cap`: the most one acquisition may ask (what the client's budget holds, and the
    /// overall one).
    pub fn new(inner: B, total: Arc<Semaphore>, client: Arc<Semaphore>, cap: usize) -> Self {
        Metered {
            inner,
            total,
            client,
            cap,
            phase: Phase::Start,
            credit: 0,
            acquiring: None,
            held: Vec::new(),
        }
    }
}

impl<B> Metered<B> {
    /// Keeps what an acquisition got, `credit` bytes of it for chunks to come; a closed
    /// budget (the server going down) lets the body read on.
    fn hold(&mut self, got: Option<[OwnedSemaphorePermit; 2]>, credit: usize) {
        match got {
            Some(permits) => {
                self.held.push(permits);
                self.credit += credit;
            }
            None => self.credit = usize::MAX / 2,
        }
    }
}

/// The length a gRPC message's prefix declares, with the prefix (one flag byte, four of
/// length, big-endian).
fn declared(data: &Bytes) -> Option<usize> {
    let len = data.get(1..5)?;
    Some(u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize + 5)
}

impl<B> HttpBody for Metered<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.phase, Phase::Chunked) {
                Phase::Start => {
                    let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => frame,
                        other => {
                            this.phase = Phase::Start;
                            return other;
                        }
                    };
                    let Some(want) = frame.data_ref().and_then(declared) else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let want = want.min(this.cap);
                    let fut = acquire(this.client.clone(), this.total.clone(), want);
                    this.phase = Phase::Whole(fut, frame, want);
                }
                Phase::Whole(mut fut, frame, want) => {
                    let got = match fut.as_mut().poll(cx) {
                        Poll::Pending => {
                            this.phase = Phase::Whole(fut, frame, want);
                            return Poll::Pending;
                        }
                        Poll::Ready(got) => got,
                    };
                    this.hold(got, 0);
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    if let Some(left) = want.checked_sub(len) {
                        this.phase = Phase::Budgeted { left };
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Phase::Budgeted { left } => {
                    this.phase = Phase::Budgeted { left };
                    let polled = Pin::new(&mut this.inner).poll_frame(cx);
                    if let Poll::Ready(Some(Ok(frame))) = &polled
                        && let Some(data) = frame.data_ref()
                    {
                        this.phase = match left.checked_sub(data.len()) {
                            Some(left) => Phase::Budgeted { left },
                            None => Phase::Chunked,
                        };
                    }
                    return polled;
                }
                Phase::Chunked => {
                    if this.credit < CHUNK {
                        let fut = this.acquiring.get_or_insert_with(|| {
                            acquire(this.client.clone(), this.total.clone(), CHUNK)
                        });
                        match fut.as_mut().poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(got) => {
                                this.acquiring = None;
                                this.hold(got, CHUNK);
                            }
                        }
                    }
                    let polled = Pin::new(&mut this.inner).poll_frame(cx);
                    if let Poll::Ready(Some(Ok(frame))) = &polled
                        && let Some(data) = frame.data_ref()
                    {
                        this.credit = this.credit.saturating_sub(data.len());
                    }
                    return polled;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body whose frames are all ready at once (a fast sender).
    struct Frames(VecDeque<Bytes>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    type Body = Pin<Box<Metered<Frames>>>;

    /// One gRPC message of `chunks` x `CHUNK` bytes (prefix included), in frames of `CHUNK`.
    fn body(budget: &BodyBudget, client: &[u8], chunks: usize) -> Body {
        let len = chunks * CHUNK;
        let mut bytes = vec![0u8; len];
        bytes[1..5].copy_from_slice(&((len - 5) as u32).to_be_bytes());
        let frames = bytes.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
        Box::pin(Metered::new(
            Frames(frames),
            budget.total.clone(),
            budget.client(Some(client)),
            budget.per_client.min(budget.total_bytes),
        ))
    }

    /// Frames read before the body waits for budget, and whether it ended.
    fn read(b: &mut Body) -> (usize, bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut n = 0;
        loop {
            match b.as_mut().poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => n += 1,
                Poll::Ready(None) => return (n, true),
                Poll::Ready(Some(Err(e))) => match e {},
                Poll::Pending => return (n, false),
            }
        }
    }

    #[test]
    fn a_client_over_its_budget_waits_and_others_go_on() {
        let budget = BodyBudget::new(4 * CHUNK, 6 * CHUNK);
        let mut a = body(&budget, b"bank-x", 3);
        assert_eq!(read(&mut a), (3, true));
        // A second message of the same client does not fit beside the first: not a byte
        // of it is passed on. Another client's is read whole.
        let mut b = body(&budget, b"bank-x", 3);
        assert_eq!(read(&mut b), (0, false));
        let mut c = body(&budget, b"bank-y", 3);
        assert_eq!(read(&mut c), (3, true));
        assert_eq!(budget.total_available(), 0);
        // The other client's message decoded (tonic drops its body): overall budget is
        // free, but this client's is still taken by its first message.
        drop(c);
        assert_eq!(read(&mut b), (0, false));
        drop(a);
        assert_eq!(read(&mut b), (3, true));
        drop(b);
        assert_eq!(budget.total_available(), 6 * CHUNK, "all given back");
    }

    #[test]
    fn many_large_messages_of_one_client_all_get_through() {
        // Taken piecemeal, 16 half-read messages would hold the budget between them and
        // wait for each other for ever; taken whole, two at a time go through.
        let budget = BodyBudget::new(4 * CHUNK, 64 * CHUNK);
        let mut bodies: Vec<Option<Body>> =
            (0..16).map(|_| Some(body(&budget, b"bank-x", 2))).collect();
        let mut rounds = 0;
        while bodies.iter().any(Option::is_some) {
            rounds += 1;
            assert!(rounds < 100, "no progress");
            for slot in &mut bodies {
                if let Some(b) = slot
                    && read(b).1
                {
                    *slot = None;
                }
            }
        }
        assert_eq!(budget.total_available(), 64 * CHUNK);
    }

    #[test]
    fn a_message_declaring_more_than_the_budget_waits_for_all_of_it() {
        // A message longer than the budget holds asks for all of it (tonic refuses it past
        // 16 MiB anyway); a malformed body without a length prefix is metered per chunk.
        let budget = BodyBudget::new(4 * CHUNK, 6 * CHUNK);
        let mut a = body(&budget, b"bank-x", 8);
        // The budget's worth, and the one frame past it that shows the message is longer.
        let (n, ended) = read(&mut a);
        assert!(!ended && n <= 5, "{n} frames");
        assert!(budget.total_available() >= 2 * CHUNK);
    }
}
