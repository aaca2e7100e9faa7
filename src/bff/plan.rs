//! Execution plan of an endpoint's parts: which part waits for which, computed at load.
//! Independent parts run concurrently; a part that reads another part's answer starts when
//! that part has finished. A cycle is a config error naming the parts on it.

/// Dependencies between the parts of one endpoint, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Parts that depend on nothing: started first, in declaration order.
    pub roots: Box<[usize]>,
    /// For each part, the parts that wait for it.
    pub dependents: Box<[Box<[usize]>]>,
    /// For each part, the parts it waits for.
    pub deps: Box<[Box<[usize]>]>,
}

impl Plan {
    /// Builds the plan from each part's dependencies; `Err` holds a cycle as part indexes,
    /// first part repeated at the end (`[a, b, a]`).
    pub fn new(deps: Vec<Vec<usize>>) -> Result<Plan, Vec<usize>> {
        let n = deps.len();
        let deps: Vec<Vec<usize>> = deps
            .into_iter()
            .map(|mut d| {
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        if let Some(cycle) = find_cycle(&deps) {
            return Err(cycle);
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        Ok(Plan {
            roots: (0..n).filter(|&i| deps[i].is_empty()).collect(),
            dependents: dependents.into_iter().map(Vec::into_boxed_slice).collect(),
            deps: deps.into_iter().map(Vec::into_boxed_slice).collect(),
        })
    }

    /// Number of parts.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether the plan has no parts.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }
}

/// Depth-first search with colours; returns the first cycle found.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let n = deps.len();
    let mut colour = vec![Colour::White; n];
    for start in 0..n {
        if colour[start] != Colour::White {
            continue;
        }
        // Stack of (node, next dependency to look at); `path` mirrors the grey nodes.
        let mut stack = vec![(start, 0usize)];
        let mut path = vec![start];
        colour[start] = Colour::Grey;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if let Some(&d) = deps[node].get(*next) {
                *next += 1;
                if d >= n {
                    continue;
                }
                match colour[d] {
                    Colour::Grey => {
                        let from = path.iter().position(|&p| p == d).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        cycle.push(d);
                        return Some(cycle);
                    }
                    Colour::White => {
                        colour[d] = Colour::Grey;
                        stack.push((d, 0));
                        path.push(d);
                    }
                    Colour::Black => {}
                }
            } else {
                colour[node] = Colour::Black;
                stack.pop();
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_dependents() {
        // 0: profile, 1: orders, 2: recommendations (reads profile), 3: reads 1 and 2.
        let p = Plan::new(vec![vec![], vec![], vec![0], vec![2, 1, 1]]).unwrap();
        assert_eq!(&*p.roots, &[0, 1]);
        assert_eq!(&*p.dependents[0], &[2]);
        assert_eq!(&*p.dependents[1], &[3]);
        assert_eq!(&*p.deps[3], &[1, 2]);
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn cycles_are_found_and_named() {
        assert_eq!(
            Plan::new(vec![vec![2], vec![0], vec![1]]).unwrap_err(),
            vec![0, 2, 1, 0]
        );
        assert_eq!(Plan::new(vec![vec![0]]).unwrap_err(), vec![0, 0]);
        assert_eq!(
            Plan::new(vec![vec![], vec![2], vec![1]]).unwrap_err(),
            vec![1, 2, 1]
        );
        assert!(Plan::new(vec![vec![], vec![0], vec![0, 1]]).is_ok());
    }
}
