//! Connected regions of changed pixels.
//!
//! 8-connectivity, because a moving edge at working resolution is often a diagonal chain of pixels that
//! 4-connectivity would cut into many small pieces, each then dropped as noise. Pieces up to `join`
//! pixels apart also count as connected: a plain-coloured object that moved by less than its size changes only
//! its leading and trailing edges (its middle covers itself), and those two belong together, as do a person's
//! head and legs when the shirt matches the wall.

/// One region: its inclusive bounds and pixel count, in working coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Leftmost column.
    pub x0: u32,
    /// Top row.
    pub y0: u32,
    /// Rightmost column.
    pub x1: u32,
    /// Bottom row.
    pub y1: u32,
    /// Pixels in the region.
    pub area: u32,
}

/// Regions of `mask` (row-major, `width` × `height`) with at least `min_area` changed pixels, in scan order.
/// Changed pixels up to `join` unchanged pixels apart belong to one region; bounds and area count changed pixels
/// only.
pub fn find_regions(mask: &[bool], width: u32, height: u32, min_area: u32, join: u32) -> Vec<Region> {
    let (w, h) = (width as usize, height as usize);
    debug_assert_eq!(mask.len(), w * h);
    let grown = grow(mask, w, h, join as usize);
    let mut seen = vec![false; mask.len()];
    // An explicit stack: recursion depth would be the region's size, and a frame can be all one region.
    let mut stack = Vec::new();
    let mut regions = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (sx, sy) = ((start % w) as u32, (start / w) as u32);
        let mut r = Region { x0: sx, y0: sy, x1: sx, y1: sy, area: 0 };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            if mask[i] {
                r.area += 1;
                r.x0 = r.x0.min(x as u32);
                r.x1 = r.x1.max(x as u32);
                r.y0 = r.y0.min(y as u32);
                r.y1 = r.y1.max(y as u32);
            }
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if grown[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        if r.area >= min_area {
            regions.push(r);
        }
    }
    regions
}

/// Sets every pixel up to `reach` pixels right of, below, or right of and below a set pixel. One-sided, so
/// that two pieces `reach` pixels apart end up touching, whether `reach` is even or odd.
fn grow(mask: &[bool], w: usize, h: usize, reach: usize) -> Vec<bool> {
    if reach == 0 {
        return mask.to_vec();
    }
    let mut across = vec![false; mask.len()];
    for y in 0..h {
        let mut since = usize::MAX;
        for x in 0..w {
            since = if mask[y * w + x] { 0 } else { since.saturating_add(1) };
            across[y * w + x] = since <= reach;
        }
    }
    let mut out = vec![false; mask.len()];
    for x in 0..w {
        let mut since = usize::MAX;
        for y in 0..h {
            since = if across[y * w + x] { 0 } else { since.saturating_add(1) };
            out[y * w + x] = since <= reach;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<bool>, u32, u32) {
        let w = rows[0].len() as u32;
        let m = rows.iter().flat_map(|r| r.bytes().map(|b| b == b'#')).collect();
        (m, w, rows.len() as u32)
    }

    #[test]
    fn diagonal_pixels_join_and_small_regions_are_dropped() {
        let (m, w, h) = mask(&["#.....", ".#...#", "..#...", "......", "....##", "....##"]);
        let r = find_regions(&m, w, h, 2, 0);
        assert_eq!(
            r,
            vec![Region { x0: 0, y0: 0, x1: 2, y1: 2, area: 3 }, Region { x0: 4, y0: 4, x1: 5, y1: 5, area: 4 },]
        );
    }

    #[test]
    fn a_full_mask_is_one_region() {
        let m = vec![true; 160 * 120];
        let r = find_regions(&m, 160, 120, 1, 4);
        assert_eq!(r, vec![Region { x0: 0, y0: 0, x1: 159, y1: 119, area: 160 * 120 }]);
    }

    #[test]
    fn pieces_within_the_gap_join_and_count_only_changed_pixels() {
        let (m, w, h) = mask(&["##..##...##", "##..##...##"]);
        assert_eq!(find_regions(&m, w, h, 1, 1).len(), 3);
        assert_eq!(
            find_regions(&m, w, h, 1, 2),
            vec![Region { x0: 0, y0: 0, x1: 5, y1: 1, area: 8 }, Region { x0: 9, y0: 0, x1: 10, y1: 1, area: 4 }]
        );
        assert_eq!(find_regions(&m, w, h, 1, 3), vec![Region { x0: 0, y0: 0, x1: 10, y1: 1, area: 12 }]);
        // Joined specks are still specks.
        let (m, w, h) = mask(&["#.#.#", "....."]);
        assert_eq!(find_regions(&m, w, h, 4, 2), vec![]);
    }

    #[test]
    fn growth_reaches_right_and_down_and_no_further() {
        let (m, w, h) = mask(&[".....", ".....", "..#..", ".....", "....."]);
        let d = grow(&m, w as usize, h as usize, 2);
        let expect = mask(&[".....", ".....", "..###", "..###", "..###"]).0;
        assert_eq!(d, expect);
    }
}
