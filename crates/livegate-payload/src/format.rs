use std::fmt;
use std::str::FromStr;

/// An image container the gateway can recognise by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageFormat {
    /// Every recognised format, for config validation and docs.
    pub const ALL: [ImageFormat; 4] = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Webp,
        ImageFormat::Gif,
    ];

    /// Lowercase name, stable: used in config files, metrics labels and audit records.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the names [`ImageFormat::from_str`] accepts.
///
/// Carries no copy of the rejected text, so it is safe to print anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image format (expected jpeg, jpg, png, webp or gif)")]
pub struct ParseImageFormatError;

impl FromStr for ImageFormat {
    type Err = ParseImageFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAMES: [(&str, ImageFormat); 5] = [
            ("jpeg", ImageFormat::Jpeg),
            ("jpg", ImageFormat::Jpeg),
            ("png", ImageFormat::Png),
            ("webp", ImageFormat::Webp),
            ("gif", ImageFormat::Gif),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, format)| format)
            .ok_or(ParseImageFormatError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in ImageFormat::ALL {
            assert_eq!(format.as_str().parse::<ImageFormat>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        let msg = ParseImageFormatError.to_string();
        assert_eq!(msg, msg.to_lowercase());
    }

    #[test]
    fn parse_is_case_insensitive_and_knows_jpg() {
        assert_eq!("JPG".parse::<ImageFormat>(), Ok(ImageFormat::Jpeg));
        assert_eq!("Jpeg".parse::<ImageFormat>(), Ok(ImageFormat::Jpeg));
        assert_eq!("WebP".parse::<ImageFormat>(), Ok(ImageFormat::Webp));
        assert_eq!("PNG".parse::<ImageFormat>(), Ok(ImageFormat::Png));
        assert_eq!("gif".parse::<ImageFormat>(), Ok(ImageFormat::Gif));
    }

    #[test]
    fn parse_rejects_other_names() {
        for bad in ["", "tiff", " jpeg", "jpeg ", "image/jpeg", "jp"] {
            assert_eq!(bad.parse::<ImageFormat>(), Err(ParseImageFormatError));
        }
    }
}
