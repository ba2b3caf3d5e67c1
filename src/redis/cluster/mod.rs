//! Redis Cluster: a `redis+cluster://` URL, hash-slot routing, MOVED/ASK redirections, the
//! slot table kept fresh, and one pool and breaker per node (see docs/scaling.md, "Cluster").

pub mod redirect;
pub mod router;
pub mod slots;
pub mod topology;
pub mod url;

pub use redirect::Redirect;
pub use router::{Cluster, RefreshThread};
pub use url::ClusterUrl;
