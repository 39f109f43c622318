//! Cutting a memory into overlapping windows on word boundaries.

/// Splits `text` into chunks of at most `size` characters (a single longer word becomes its own
/// chunk), each starting on a word boundary and sharing about `overlap` characters with the
/// previous one. Whitespace-only text gives no chunks.
pub fn chunk(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let size = size.max(1);
    // (start byte, end byte, start char index, end char index) of each word.
    let mut words: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut char_idx = 0;
    let mut current: Option<(usize, usize)> = None;
    for (byte, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some((sb, sc)) = current.take() {
                words.push((sb, byte, sc, char_idx));
            }
        } else if current.is_none() {
            current = Some((byte, char_idx));
        }
        char_idx += 1;
    }
    if let Some((sb, sc)) = current {
        words.push((sb, text.len(), sc, char_idx));
    }
    if words.is_empty() {
        return Vec::new();
    }
    let mut chunks = Vec::new();
    let mut first = 0;
    loop {
        let mut last = first;
        while last + 1 < words.len() && words[last + 1].3 - words[first].2 <= size {
            last += 1;
        }
        chunks.push(text[words[first].0..words[last].1].to_string());
        if last + 1 >= words.len() {
            break;
        }
        // Next chunk starts at the first word that lies within `overlap` chars of the end,
        // but always moves forward.
        let end_char = words[last].3;
        let mut next = last + 1;
        while next > first + 1 && end_char - words[next - 1].2 <= overlap {
            next -= 1;
        }
        first = next;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunk("  hello world  ", 100, 10), vec!["hello world"]);
        assert!(chunk("   ", 100, 10).is_empty());
    }

    #[test]
    fn chunks_respect_size_and_word_boundaries() {
        let text = "one two three four five six seven eight nine ten";
        let chunks = chunk(text, 15, 0);
        assert_eq!(
            chunks,
            vec!["one two three", "four five six", "seven eight", "nine ten"]
        );
        for c in &chunks {
            assert!(c.chars().count() <= 15);
        }
    }

    #[test]
    fn overlap_repeats_the_tail_of_the_previous_chunk() {
        let chunks = chunk("aaa bbb ccc ddd eee fff", 11, 4);
        assert_eq!(chunks, vec!["aaa bbb ccc", "ccc ddd eee", "eee fff"]);
    }

    #[test]
    fn a_word_longer_than_the_size_is_its_own_chunk_and_progress_is_made() {
        let chunks = chunk("tiny enormouslylongword tiny", 5, 4);
        assert_eq!(chunks, vec!["tiny", "enormouslylongword", "tiny"]);
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let chunks = chunk("héllo wörld ünïcode ñ", 11, 0);
        assert_eq!(chunks, vec!["héllo wörld", "ünïcode ñ"]);
    }
}
