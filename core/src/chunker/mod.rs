//! TEMPORARY stand-in until the chunker branch lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub level: u8,
}
impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            min: 512 << 10,
            avg: 1 << 20,
            max: 8 << 20,
            level: 2,
        }
    }
}
impl ChunkerParams {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
