//! A QR code as a PNG image: `qrcode` encodes, its modules are drawn 8 pixels square with the
//! standard quiet zone of 4 modules into a 1-bit grayscale PNG by `png` (a 9-digit CHFID: 232 × 232
//! pixels, ~300 bytes). No image crate: the drawing is one loop, the format is png's.

use qrcode::{Color, EcLevel, QrCode};

use crate::DocumentError;

const QUIET_ZONE: usize = 4;
const SCALE: usize = 8;

pub(crate) fn png(text: &str) -> Result<Vec<u8>, DocumentError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| DocumentError::Qr(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let row_bytes = side.div_ceil(8);
    // a set bit is white
    let mut pixels = vec![0u8; row_bytes * side];
    for y in 0..side {
        for x in 0..side {
            let (mx, my) = ((x / SCALE).checked_sub(QUIET_ZONE), (y / SCALE).checked_sub(QUIET_ZONE));
            let dark = match (mx, my) {
                (Some(mx), Some(my)) if mx < modules && my < modules => colors[my * modules + mx] == Color::Dark,
                _ => false,
            };
            if !dark {
                pixels[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut out = Vec::with_capacity(512);
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().map_err(|e| DocumentError::Qr(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| DocumentError::Qr(e.to_string()))?;
    writer.finish().map_err(|e| DocumentError::Qr(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_image_holds_the_code_s_modules_in_its_quiet_zone() {
        let image = super::png("123456782").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&image));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // version 1: 21 modules and 4 each side, 8 pixels a module
        assert_eq!((info.width, info.height), (232, 232));
        let pixel = |x: usize, y: usize| buf[y * info.line_size + x / 8] & (0x80 >> (x % 8)) == 0;
        assert!(!pixel(0, 0) && !pixel(31, 31), "the quiet zone is white");
        assert!(pixel(32, 32) && pixel(32 + 6 * 8, 32), "a finder pattern's dark corner");
        assert!(image.len() < 1024, "{} bytes", image.len());
    }
}
