//! A scripted stand-in for the vendor client, for the layers' unit tests.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use tokio::sync::watch;
use tower::{Service, ServiceExt, service_fn};

use crate::{UpstreamError, VendorAnswer, VendorResponse};

/// What the next calls get.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    Status(u16),
    ConnectFailed,
    Unreachable,
    Timeout,
    BadResponse,
    Auth,
    /// Waits for [`ScriptedVendor::release`].
    Pending,
}

/// Counts calls and answers each with the next queued [`Reply`], or else
/// the current one.
#[derive(Clone)]
pub(crate) struct ScriptedVendor {
    calls: Arc<AtomicUsize>,
    queued: Arc<Mutex<VecDeque<Reply>>>,
    reply: Arc<Mutex<Reply>>,
    released: watch::Sender<Option<Reply>>,
}

impl ScriptedVendor {
    pub(crate) fn new(reply: Reply) -> Self {
        Self {
            calls: Arc::default(),
            queued: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
            released: watch::Sender::new(None),
        }
    }

    pub(crate) fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// The next calls get these, in order, before the current reply.
    pub(crate) fn queue(&self, replies: impl IntoIterator<Item = Reply>) {
        self.queued.lock().unwrap().extend(replies);
    }

    /// Pending calls (and later ones) get `reply`.
    pub(crate) fn release(&self, reply: Reply) {
        self.set(reply);
        self.released.send_replace(Some(reply));
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<
        Request<Bytes>,
        Response = VendorResponse,
        Error = UpstreamError,
        Future = impl Future<Output = Result<VendorResponse, UpstreamError>> + Send,
    > + Clone
    + Send
    + 'static {
        let vendor = self.clone();
        service_fn(move |_: Request<Bytes>| {
            vendor.calls.fetch_add(1, Ordering::SeqCst);
            let queued = vendor.queued.lock().unwrap().pop_front();
            let reply = queued.unwrap_or_else(|| *vendor.reply.lock().unwrap());
            let mut released = vendor.released.subscribe();
            async move {
                let reply = match reply {
                    Reply::Pending => *released
                        .wait_for(Option::is_some)
                        .await
                        .expect("vendor dropped")
                        .as_ref()
                        .unwrap(),
                    reply => reply,
                };
                answer(reply)
            }
        })
    }
}

fn answer(reply: Reply) -> Result<VendorResponse, UpstreamError> {
    match reply {
        Reply::Status(status) => Ok(VendorResponse {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from_static(b"{}"),
            answer: VendorAnswer::default(),
            elapsed: Duration::from_millis(1),
        }),
        Reply::ConnectFailed => Err(UpstreamError::ConnectFailed("connection refused".into())),
        Reply::Unreachable => Err(UpstreamError::Unreachable("connection reset".into())),
        Reply::Timeout => Err(UpstreamError::Timeout),
        Reply::BadResponse => Err(UpstreamError::BadResponse("not a JSON object")),
        Reply::Auth => Err(UpstreamError::Auth(401)),
        Reply::Pending => unreachable!("resolved before"),
    }
}

/// One call with an empty request on a clone of the service.
pub(crate) trait CallOnce {
    fn call_once(&self) -> impl Future<Output = Result<VendorResponse, UpstreamError>>;
}

impl<S> CallOnce for S
where
    S: Service<Request<Bytes>, Response = VendorResponse, Error = UpstreamError> + Clone,
{
    fn call_once(&self) -> impl Future<Output = Result<VendorResponse, UpstreamError>> {
        self.clone().oneshot(Request::new(Bytes::new()))
    }
}
