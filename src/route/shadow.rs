//! Routes that can never match: an earlier route with the same host and path takes every
//! request they would (all their methods, with no condition of its own they might fail).

use super::Route;

/// `(shadowed, by)` index pairs over routes in file order; each shadowed route is named once,
/// with the first route that hides it.
pub fn shadowed(routes: &[impl AsRef<Route>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, later) in routes.iter().enumerate() {
        let later = later.as_ref();
        if let Some(i) = routes[..j].iter().position(|e| covers(e.as_ref(), later)) {
            out.push((j, i));
        }
    }
    out
}

/// Whether `earlier` takes every request `later` would, so `later` is never chosen.
fn covers(earlier: &Route, later: &Route) -> bool {
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|m| e.contains(m)),
    };
    // A condition of the earlier route that the later one also requires cannot fail for it.
    let headers = earlier.headers.iter().all(|h| later.headers.contains(h));
    earlier.host == later.host
        && earlier.path == later.path
        && methods
        && headers
        && earlier.conditions.is_none()
}
