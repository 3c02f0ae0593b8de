//! Laid-out pages drawn into a PDF by krilla: the text as text (shaped, the font subset and
//! embedded with a ToUnicode map, so that it can be searched and copied), rules and shading as paths.

use krilla::Document;
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::TextDirection;

use crate::DocumentError;
use crate::fonts::{BOLD, REGULAR};
use crate::form::{Op, PAGE_HEIGHT, PAGE_WIDTH};

fn gray(lightness: u8) -> Fill {
    Fill { paint: luma::Color::new(lightness).into(), opacity: NormalizedF32::ONE, ..Fill::default() }
}

pub(crate) fn render(title: &str, pages: &[Vec<Op>]) -> Result<Vec<u8>, DocumentError> {
    let mut document = Document::new();
    document.set_metadata(Metadata::new().title(title.to_string()).producer("careledger".to_string()));
    for ops in pages {
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).expect("A4 has a size");
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, op);
        }
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|e| DocumentError::Pdf(format!("{e:?}")))
}

fn draw(surface: &mut Surface<'_>, op: &Op) {
    match op {
        Op::Text { x, y, size, bold, gray: is_gray, text } => {
            surface.set_stroke(None);
            surface.set_fill(Some(gray(if *is_gray { 90 } else { 0 })));
            let face = if *bold { &BOLD } else { &REGULAR };
            surface.draw_text(Point::from_xy(*x, *y), face.font.clone(), *size, text, false, TextDirection::Auto);
        }
        Op::Rule { x1, x2, y, width } => {
            let mut path = PathBuilder::new();
            path.move_to(*x1, *y);
            path.line_to(*x2, *y);
            if let Some(path) = path.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    paint: luma::Color::new(110).into(),
                    width: *width,
                    ..Stroke::default()
                }));
                surface.draw_path(&path);
            }
        }
        Op::Shade { x, y, w, h } => {
            let mut path = PathBuilder::new();
            if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                path.push_rect(rect);
            }
            if let Some(path) = path.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(gray(232)));
                surface.draw_path(&path);
            }
        }
    }
}
