//! What every compute path takes: a batch of token sequences laid end to end, unpadded.

/// Token ids and token-type ids of several sequences, concatenated, with each one's length.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub lengths: Vec<usize>,
}

impl Batch {
    /// Appends a sequence; `type_ids` is cut or zero-filled to the length of `ids`.
    pub fn push(&mut self, ids: &[u32], type_ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        let types = type_ids.len().min(ids.len());
        self.type_ids.extend_from_slice(&type_ids[..types]);
        self.type_ids.resize(self.ids.len(), 0);
        self.lengths.push(ids.len());
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Where each sequence starts in `ids`.
    pub fn starts(&self) -> Vec<usize> {
        self.lengths
            .iter()
            .scan(0, |next, &len| {
                let start = *next;
                *next += len;
                Some(start)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_laid_end_to_end_with_type_ids_matched_to_ids() {
        let mut b = Batch::default();
        b.push(&[1, 2, 3], &[0, 0, 1]);
        b.push(&[4], &[]);
        b.push(&[5, 6], &[1, 1, 1]);
        assert_eq!(b.ids, [1, 2, 3, 4, 5, 6]);
        assert_eq!(b.type_ids, [0, 0, 1, 0, 1, 1]);
        assert_eq!(b.starts(), [0, 3, 4]);
        assert_eq!(b.len(), 3);
    }
}
