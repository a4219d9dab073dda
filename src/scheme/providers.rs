//! The named providers beyond the first ones, one file each: its module
//! docs say what is signed, what is not, and where the delivery id, dedupe
//! key and event type come from; its `impl Scheme` block adds the
//! constructor (`Scheme::razorpay()`, …). Adding a provider is one file
//! here, one row in [`NAMED`], one vectors file under `tests/vectors/` and
//! one row in the README's scheme table: the receiver, the demo sender,
//! the vectors, hostile-header and property suites and the fuzz target
//! all read this table.

use super::Scheme;
use crate::ConfigError;

mod adyen;
mod bitbucket;
mod calendly;
mod coinbase;
mod dropbox;
mod gitlab;
mod hubspot;
mod intercom;
mod lemonsqueezy;
mod linear;
mod mailgun;
mod mux;
mod paddle;
mod razorpay;
mod sentry;
mod square;
mod standard_senders;
mod twilio;
mod twitch;
mod typeform;
mod vercel;
mod workos;
mod zendesk;
mod zoom;

/// How a named provider's scheme is made.
#[derive(Clone, Copy)]
pub(crate) enum Make {
    /// It needs nothing but secrets.
    Plain(fn() -> Scheme),
    /// It signs the URL the provider calls, from configuration.
    Url(fn(&str) -> Result<Scheme, ConfigError>),
}

/// A named provider: its name (the `Provider::Named` value, the demo
/// route's path segment) and how to make its scheme.
pub(crate) type Entry = (&'static str, Make);

/// Every provider of this module, by name.
pub(crate) const NAMED: &[Entry] = &[
    ("adyen", Make::Plain(Scheme::adyen)),
    ("anthropic", Make::Plain(Scheme::anthropic)),
    ("bitbucket", Make::Plain(Scheme::bitbucket)),
    ("brex", Make::Plain(Scheme::brex)),
    ("calendly", Make::Plain(Scheme::calendly)),
    ("clerk", Make::Plain(Scheme::clerk)),
    ("coinbase", Make::Plain(Scheme::coinbase)),
    ("dropbox", Make::Plain(Scheme::dropbox)),
    ("gitlab", Make::Plain(Scheme::gitlab)),
    ("hubspot", Make::Url(Scheme::hubspot)),
    ("intercom", Make::Plain(Scheme::intercom)),
    ("lemonsqueezy", Make::Plain(Scheme::lemon_squeezy)),
    ("linear", Make::Plain(Scheme::linear)),
    ("mailgun", Make::Plain(Scheme::mailgun)),
    ("mux", Make::Plain(Scheme::mux)),
    ("openai", Make::Plain(Scheme::openai)),
    ("paddle", Make::Plain(Scheme::paddle)),
    ("razorpay", Make::Plain(Scheme::razorpay)),
    ("replicate", Make::Plain(Scheme::replicate)),
    ("resend", Make::Plain(Scheme::resend)),
    ("sentry", Make::Plain(Scheme::sentry)),
    ("square", Make::Url(Scheme::square)),
    ("twilio", Make::Url(Scheme::twilio)),
    ("twitch", Make::Plain(Scheme::twitch)),
    ("typeform", Make::Plain(Scheme::typeform)),
    ("vercel", Make::Plain(Scheme::vercel)),
    ("workos", Make::Plain(Scheme::workos)),
    ("zendesk", Make::Plain(Scheme::zendesk)),
    ("zoom", Make::Plain(Scheme::zoom)),
];

/// The entry called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Entry> {
    NAMED.iter().find(|(n, _)| *n == name)
}
