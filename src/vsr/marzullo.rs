//! Marzullo's algorithm: given the intervals in which each of several clock sources says the
//! true offset lies, the smallest interval that the largest number of sources agree on.
//!
//! The cluster clock (`vsr::clock`) runs it over one interval per replica — its own clock and
//! each peer's best sample, every one widened by the offset tolerance — and trusts the result
//! only if a replication quorum of sources agrees. A source whose clock is wrong (a falseticker)
//! is outvoted as long as the sources that are right outnumber it.

use crate::constants::REPLICAS_MAX;

/// One source's claim: the true offset lies in `lower..=upper` (ns; `lower ≤ upper`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The smallest offset the source allows.
    pub lower: i64,
    /// The largest offset the source allows.
    pub upper: i64,
}

/// The result: the interval most sources agree on, and how many do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// The smallest offset of the agreed interval.
    pub lower: i64,
    /// The largest offset of the agreed interval.
    pub upper: i64,
    /// How many sources' intervals contain the whole agreed interval.
    pub sources_true: u8,
    /// How many do not (falsetickers, or merely sources of another cluster of agreement).
    pub sources_false: u8,
}

/// The most sources: one per replica.
const SOURCES_MAX: usize = REPLICAS_MAX as usize;

/// The interval the most `sources` agree on (the narrowest, if several regions tie; the
/// lowest, if they tie in width too). With no source, an empty agreement at 0.
pub fn smallest_interval(sources: &[Bounds]) -> Interval {
    assert!(sources.len() <= SOURCES_MAX);
    // Each source contributes an edge where it begins and one where it ends. At equal offsets
    // beginnings sort before ends, so that intervals touching at one point agree there.
    let mut edges = [(0i64, 0i8); 2 * SOURCES_MAX];
    for (index, source) in sources.iter().enumerate() {
        assert!(source.lower <= source.upper, "a source's bounds are ordered: {source:?}");
        edges[2 * index] = (source.lower, -1);
        edges[2 * index + 1] = (source.upper, 1);
    }
    let edges = &mut edges[..2 * sources.len()];
    edges.sort_unstable();
    let mut best = Interval { lower: 0, upper: 0, sources_true: 0, sources_false: sources.len() as u8 };
    let mut count: u8 = 0;
    for (index, &(offset, kind)) in edges.iter().enumerate() {
        if kind == 1 {
            count -= 1;
            continue;
        }
        count += 1;
        // Between a beginning and the next edge, `count` sources overlap.
        let upper = edges[index + 1].0;
        let width = i128::from(upper) - i128::from(offset);
        let width_best = i128::from(best.upper) - i128::from(best.lower);
        let better = count > best.sources_true || (count == best.sources_true && width < width_best);
        if better {
            best = Interval {
                lower: offset,
                upper,
                sources_true: count,
                sources_false: sources.len() as u8 - count,
            };
        }
    }
    assert_eq!(count, 0, "every source's interval ends");
    assert!(best.lower <= best.upper);
    assert_eq!(usize::from(best.sources_true + best.sources_false), sources.len());
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(lower: i64, upper: i64) -> Bounds {
        Bounds { lower, upper }
    }

    fn interval(lower: i64, upper: i64, sources_true: u8, sources_false: u8) -> Interval {
        Interval { lower, upper, sources_true, sources_false }
    }

    #[test]
    fn the_agreement_of_the_most_sources_wins_and_a_falseticker_is_outvoted() {
        // Three sources overlapping in 11..=12, one falseticker far away.
        let sources = [bounds(8, 12), bounds(11, 13), bounds(10, 12), bounds(100, 120)];
        assert_eq!(smallest_interval(&sources), interval(11, 12, 3, 1));
        // The order of the sources does not matter.
        let reversed = [sources[3], sources[2], sources[1], sources[0]];
        assert_eq!(smallest_interval(&reversed), interval(11, 12, 3, 1));
    }

    #[test]
    fn intervals_touching_at_one_point_agree_on_that_point() {
        assert_eq!(smallest_interval(&[bounds(0, 5), bounds(5, 9)]), interval(5, 5, 2, 0));
        assert_eq!(smallest_interval(&[bounds(0, 0), bounds(0, 0), bounds(0, 0)]), interval(0, 0, 3, 0));
    }

    #[test]
    fn disjoint_sources_each_agree_only_with_themselves_and_the_narrowest_is_chosen() {
        assert_eq!(
            smallest_interval(&[bounds(0, 10), bounds(20, 25), bounds(40, 60)]),
            interval(20, 25, 1, 2)
        );
        // Two regions of two sources each: the narrower one.
        let sources = [bounds(0, 10), bounds(5, 10), bounds(20, 30), bounds(21, 22)];
        assert_eq!(smallest_interval(&sources), interval(21, 22, 2, 2));
    }

    #[test]
    fn no_source_agrees_on_nothing_and_the_extremes_do_not_overflow() {
        assert_eq!(smallest_interval(&[]), interval(0, 0, 0, 0));
        assert_eq!(smallest_interval(&[bounds(i64::MIN, i64::MAX)]), interval(i64::MIN, i64::MAX, 1, 0));
        // Two regions of two sources, equally wide: the lower one.
        let sources = [bounds(i64::MIN, -1), bounds(1, i64::MAX), bounds(-5, 5)];
        assert_eq!(smallest_interval(&sources), interval(-5, -1, 2, 1));
        // Six sources, the most a cluster has.
        let six = [bounds(-3, 3); SOURCES_MAX];
        assert_eq!(smallest_interval(&six), interval(-3, 3, 6, 0));
    }

    #[test]
    #[should_panic(expected = "bounds are ordered")]
    fn inverted_bounds_are_a_programmer_error() {
        smallest_interval(&[bounds(5, 4)]);
    }
}
