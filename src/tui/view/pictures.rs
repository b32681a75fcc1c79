//! Pictures a run draws, for looking rather than reading: a grid of small grayscale images
//! (two pixels per cell with the upper half-block: foreground the upper pixel, background the
//! lower one) and a 2-D scatter of samples over reference points (braille). Both draw into
//! whatever area they get, from one cell up, and never outside it.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::canvas::{Canvas, Points};
use ratatui::widgets::{Block, Borders, Widget};

use crate::metrics::picture::Picture;

/// A 256-colour gray for a value in [0, 1] (the 24 grays 232..=255; 0 black, 1 white).
pub fn gray(v: f32) -> Color {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Color::Indexed(232 + (v * 23.0).round() as u8)
}

/// Columns and rows of cells one image takes, its caption row included.
fn image_cells(width: usize, height: usize, captions: bool) -> (u16, u16) {
    (width as u16, height.div_ceil(2) as u16 + captions as u16)
}

/// How many images of `cell` size (plus a one-cell gap) fit in `area`: (per row, rows).
pub fn grid_fit(area: Rect, cell: (u16, u16)) -> (usize, usize) {
    let per_row = (area.width as usize + 1) / (cell.0 as usize + 1);
    let rows = (area.height as usize + 1) / (cell.1 as usize + 1);
    (per_row, rows)
}

/// A picture with a bordered title, drawn as a grid or a scatter.
pub struct PictureView<'a> {
    pub title: String,
    pub picture: &'a Picture,
}

impl Widget for PictureView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {} ", self.title));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        match self.picture {
            Picture::Images {
                width,
                height,
                pixels,
                captions,
            } => render_images(*width, *height, pixels, captions, inner, buf),
            Picture::Scatter { .. } => render_scatter(self.picture, inner, buf),
        }
    }
}

fn render_images(
    width: usize,
    height: usize,
    pixels: &[f32],
    captions: &[String],
    area: Rect,
    buf: &mut Buffer,
) {
    let per = width * height;
    if per == 0 {
        return;
    }
    let n = pixels.len() / per;
    let cell = image_cells(width, height, !captions.is_empty());
    let (per_row, rows) = grid_fit(area, cell);
    if per_row == 0 || rows == 0 {
        buf.set_string(area.x, area.y, "…", Style::default());
        return;
    }
    for k in 0..n.min(per_row * rows) {
        let (gx, gy) = (k % per_row, k / per_row);
        let x0 = area.x + (gx as u16) * (cell.0 + 1);
        let y0 = area.y + (gy as u16) * (cell.1 + 1);
        let img = &pixels[k * per..(k + 1) * per];
        for r in (0..height).step_by(2) {
            for c in 0..width {
                let top = img[r * width + c];
                let bottom = if r + 1 < height {
                    img[(r + 1) * width + c]
                } else {
                    0.0
                };
                let (x, y) = (x0 + c as u16, y0 + (r / 2) as u16);
                if x < area.right() && y < area.bottom() {
                    buf[(x, y)]
                        .set_symbol("▀")
                        .set_style(Style::default().fg(gray(top)).bg(gray(bottom)));
                }
            }
        }
        if let Some(cap) = captions.get(k) {
            let y = y0 + cell.1 - 1;
            if y < area.bottom() {
                let text: String = cap.chars().take(width).collect();
                buf.set_string(x0, y, text, Style::default().fg(Color::Gray));
            }
        }
    }
}

fn render_scatter(picture: &Picture, area: Rect, buf: &mut Buffer) {
    let (Some(b), Picture::Scatter { points, reference }) = (picture.bounds(), picture) else {
        buf.set_string(area.x, area.y, "no points", Style::default());
        return;
    };
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(1e-9);
        [lo - 0.05 * span, hi + 0.05 * span]
    };
    let to = |p: &[[f32; 2]]| -> Vec<(f64, f64)> {
        p.iter().map(|q| (q[0] as f64, q[1] as f64)).collect()
    };
    let (pts, refs) = (to(points), to(reference));
    Canvas::default()
        .marker(Marker::Braille)
        .x_bounds(pad(b[0], b[1]))
        .y_bounds(pad(b[2], b[3]))
        .paint(|ctx| {
            ctx.draw(&Points {
                coords: &refs,
                color: Color::DarkGray,
            });
            ctx.layer();
            ctx.draw(&Points {
                coords: &pts,
                color: Color::Cyan,
            });
        })
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(p: &Picture, w: u16, h: u16) -> Buffer {
        let area = Rect::new(0, 0, w, h);
        let mut buf = Buffer::empty(area);
        PictureView {
            title: "t".into(),
            picture: p,
        }
        .render(area, &mut buf);
        buf
    }

    #[test]
    fn an_image_is_half_blocks_with_its_two_pixels_as_colours() {
        // A 2x2 image: top row black/white, bottom row white/black.
        let p = Picture::images(2, 2, &[0.0, 1.0, 1.0, 0.0], 0.0, 1.0, vec![]);
        let buf = draw(&p, 6, 4);
        let c = &buf[(1, 1)];
        assert_eq!(c.symbol(), "▀");
        assert_eq!((c.fg, c.bg), (gray(0.0), gray(1.0)));
        let c = &buf[(2, 1)];
        assert_eq!((c.fg, c.bg), (gray(1.0), gray(0.0)));
        assert_eq!(gray(0.0), Color::Indexed(232));
        assert_eq!(gray(1.0), Color::Indexed(255));
    }

    #[test]
    fn the_grid_fits_what_the_area_holds_and_captions_go_below() {
        let rows: Vec<f32> = vec![0.5; 64 * 10];
        let caps: Vec<String> = (0..10).map(|i| format!("#{i}")).collect();
        let p = Picture::images(8, 8, &rows, 0.0, 1.0, caps);
        // Inner area 26 x 11: 3 images per row (8 + 1 gap), 2 rows of 4 + 1 caption (+ gap).
        let buf = draw(&p, 28, 13);
        assert_eq!(grid_fit(Rect::new(0, 0, 26, 11), (8, 5)), (3, 2));
        assert_eq!(grid_fit(Rect::new(0, 0, 26, 10), (8, 5)), (3, 1));
        let line = |y: u16| (0..28).map(|x| buf[(x, y)].symbol()).collect::<String>();
        assert!(
            line(5).contains("#0") && line(5).contains("#2"),
            "{}",
            line(5)
        );
        assert!(
            line(11).contains("#3") && line(11).contains("#5"),
            "{}",
            line(11)
        );
        assert!(!line(11).contains("#6"), "a third row does not fit");
        assert!(line(12).contains('─'), "the bottom border is intact");
    }

    #[test]
    fn pictures_never_panic_on_any_size() {
        let img = Picture::images(8, 8, &vec![0.3; 64 * 5], 0.0, 1.0, vec!["a".into()]);
        let sc = Picture::scatter(&[[0.0, 0.0], [1.0, 2.0]], &[[0.5, 0.5]]);
        let empty = Picture::scatter(&[], &[]);
        for w in 0..30 {
            for h in 0..12 {
                draw(&img, w, h);
                draw(&sc, w, h);
                draw(&empty, w, h);
            }
        }
    }

    #[test]
    fn a_scatter_draws_braille_points() {
        let pts: Vec<[f32; 2]> = (0..50).map(|i| [i as f32, (i * i) as f32]).collect();
        let p = Picture::scatter(&pts, &[]);
        let buf = draw(&p, 20, 10);
        let braille = (0..20)
            .flat_map(|x| (0..10).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                buf[(x, y)]
                    .symbol()
                    .chars()
                    .any(|c| ('\u{2801}'..='\u{28FF}').contains(&c))
            })
            .count();
        assert!(braille > 5, "{braille} braille cells");
    }
}
