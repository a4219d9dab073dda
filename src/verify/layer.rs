use tower::Layer;

use super::service::VerifyWebhook;
use crate::Verifier;

/// Applies [`VerifyWebhook`] to a service. Made by [`Verifier::layer`].
#[derive(Clone, Debug)]
pub struct VerifyWebhookLayer {
    verifier: Verifier,
}

impl VerifyWebhookLayer {
    /// A layer verifying requests with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook::new(inner, self.verifier.clone())
    }
}
