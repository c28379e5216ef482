//! One 128×64 monochrome picture: what the screens draw into and what the panels show.
//!
//! Screens render into a `Frame` (an `embedded-graphics` draw target), never into a
//! driver, so the same picture can go to the OLED, to a PNG file, or be compared in a
//! test with what the emulated glass shows. PNGs are 1-bit greyscale (lit pixel =
//! white), optionally scaled up for documentation.

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;

pub const WIDTH: u32 = 128;
pub const HEIGHT: u32 = 64;

/// A 128×64 one-bit picture, row-major, `true` = lit.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pixels: Vec<bool>,
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            pixels: vec![false; (WIDTH * HEIGHT) as usize],
        }
    }
}

impl std::fmt::Debug for Frame {
    /// ASCII art, so a failing comparison shows the picture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for y in 0..HEIGHT {
            let row: String = (0..WIDTH)
                .map(|x| if self.get(x, y) { '#' } else { '.' })
                .collect();
            writeln!(f, "{row}")?;
        }
        Ok(())
    }
}

impl Frame {
    pub fn get(&self, x: u32, y: u32) -> bool {
        x < WIDTH && y < HEIGHT && self.pixels[(y * WIDTH + x) as usize]
    }

    pub fn set(&mut self, x: u32, y: u32, on: bool) {
        if x < WIDTH && y < HEIGHT {
            self.pixels[(y * WIDTH + x) as usize] = on;
        }
    }

    pub fn lit_count(&self) -> usize {
        self.pixels.iter().filter(|&&p| p).count()
    }

    /// The picture moved right by `dx` and down by `dy` pixels (burn-in care); what
    /// moves off the edge is dropped (screens keep a one-pixel margin for this).
    pub fn shifted(&self, dx: u32, dy: u32) -> Frame {
        let mut out = Frame::default();
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                if self.get(x, y) {
                    out.set(x + dx, y + dy, true);
                }
            }
        }
        out
    }

    /// The picture turned by 180 degrees.
    pub fn rotated_180(&self) -> Frame {
        let mut out = Frame::default();
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                out.set(WIDTH - 1 - x, HEIGHT - 1 - y, self.get(x, y));
            }
        }
        out
    }

    /// Encodes as a 1-bit greyscale PNG, each pixel `scale`×`scale`.
    pub fn to_png(&self, scale: u32) -> Vec<u8> {
        let scale = scale.max(1);
        let (w, h) = (WIDTH * scale, HEIGHT * scale);
        let row_bytes = w.div_ceil(8) as usize;
        let mut data = vec![0u8; row_bytes * h as usize];
        for y in 0..h {
            for x in 0..w {
                if self.get(x / scale, y / scale) {
                    data[y as usize * row_bytes + (x / 8) as usize] |= 0x80 >> (x % 8);
                }
            }
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        let mut writer = encoder
            .write_header()
            .expect("writing to a Vec cannot fail");
        writer
            .write_image_data(&data)
            .expect("the buffer matches the header");
        writer.finish().expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a PNG written by [`Frame::to_png`] (scale 1) or any 128×64 greyscale
    /// PNG; a pixel is lit when it is brighter than mid-grey.
    pub fn from_png(bytes: &[u8]) -> Result<Frame, String> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or("image too large")?];
        let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        if (info.width, info.height) != (WIDTH, HEIGHT) {
            return Err(format!(
                "expected 128x64, got {}x{}",
                info.width, info.height
            ));
        }
        let channels = info.color_type.samples();
        let depth_bytes = if info.bit_depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
        let mut frame = Frame::default();
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let i = y as usize * info.line_size + x as usize * channels * depth_bytes;
                frame.set(x, y, buf[i] >= 0x80);
            }
        }
        Ok(frame)
    }
}

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Frame {
    type Color = BinaryColor;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, color) in pixels {
            if p.x >= 0 && p.y >= 0 {
                self.set(p.x as u32, p.y as u32, color.is_on());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_and_rotation() {
        let mut f = Frame::default();
        f.set(0, 0, true);
        f.set(127, 10, true);
        f.set(5, 63, true);
        assert_eq!(Frame::from_png(&f.to_png(1)).unwrap(), f);
        assert!(f.rotated_180().get(127, 63));
        assert_eq!(f.rotated_180().rotated_180(), f);
        let s = f.shifted(1, 1);
        assert!(s.get(1, 1) && !s.get(0, 0) && s.lit_count() == 1);
        assert!(
            Frame::from_png(&f.to_png(4)).is_err(),
            "scaled PNGs are not frames"
        );
    }
}
