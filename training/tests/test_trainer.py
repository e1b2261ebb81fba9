"""The trainer's data reading and repository writing, without torch (standard library only):

    python3 -m unittest discover -s training/tests        # tests/e2e/train.sh runs it first
"""

import json
import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiment_train import data, repository  # noqa: E402


class DataTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def test_sst2_tsv_with_integer_labels_named_by_the_base_model(self):
        path = self.write("dev.tsv", "label\tcontent\n0\tdull\n1\tgreat\n\n1\tfine\n")
        d = data.load(path, base_labels=["NEGATIVE", "POSITIVE"])
        self.assertEqual(d.texts, ["dull", "great", "fine"])
        self.assertEqual(d.labels, [0, 1, 1])
        self.assertEqual(d.names, ["NEGATIVE", "POSITIVE"])
        self.assertEqual(len(d.sha256), 64)
        # A base model with other labels: placeholders; --labels wins over both.
        self.assertEqual(data.load(path, base_labels=["a", "b", "c", "d"]).names, ["a", "b", "c", "d"])
        self.assertEqual(data.load(path).names, ["LABEL_0", "LABEL_1"])
        self.assertEqual(data.load(path, labels=["neg", "pos"]).names, ["neg", "pos"])

    def test_csv_and_jsonl_with_label_names(self):
        csv_path = self.write("d.csv", 'text,sentiment\n"good, really",pos\nbad,neg\n')
        d = data.load(csv_path)
        self.assertEqual((d.texts, d.labels, d.names), (["good, really", "bad"], [1, 0], ["neg", "pos"]))
        jsonl = self.write("d.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
        d = data.load(jsonl, labels=["pos", "neg"])
        self.assertEqual((d.labels, d.names), ([0, 1], ["pos", "neg"]))

    def test_bad_files_say_where_and_why(self):
        cases = {
            "a.tsv": ("label\tcontent\n0\tx\textra\n", "2: 3 columns"),
            "b.tsv": ("label\tbody\n0\tx\n", "no text column"),
            "c.jsonl": ('{"text": "x", "label": 0}\nnot json\n', ":2: not JSON"),
            "d.tsv": ("label\ttext\n1\tx\n1\ty\n", "the same label"),
            "e.txt": ("label\ttext\n", "cannot tell the format"),
            "f.tsv": ("label\ttext\n0\t \n1\ty\n", "example 1 has no text"),
        }
        for name, (text, why) in cases.items():
            with self.assertRaises(data.DataError, msg=name) as caught:
                data.load(self.write(name, text))
            self.assertIn(why, str(caught.exception), name)
        with self.assertRaises(data.DataError):
            data.load(self.write("g.jsonl", '{"text": "x", "label": "z"}\n{"text": "y", "label": "w"}\n'),
                      labels=["z"])

    def test_split_is_seeded_and_holds_some_back(self):
        d = data.Dataset([f"t{i}" for i in range(40)], [i % 2 for i in range(40)], ["a", "b"], "")
        train, held = data.split(d, 0.25, 7)
        self.assertEqual((len(train), len(held)), (30, 10))
        self.assertEqual(sorted(train + held), list(range(40)))
        self.assertEqual(data.split(d, 0.25, 7), (train, held))
        self.assertNotEqual(data.split(d, 0.25, 8), (train, held))
        with self.assertRaises(data.DataError):
            data.split(data.Dataset(["x"], [0], ["a"], ""), 0.5, 1)


class RepositoryTest(unittest.TestCase):
    def setUp(self):
        self.repo = Path(tempfile.mkdtemp())

    def fill(self, staged):
        for name in repository.REQUIRED:
            (staged.dir / name).write_text("{}")

    def test_versions_are_written_beside_and_renamed_into_the_next_number(self):
        target = repository.model_dir(self.repo, "sst2")
        with repository.locked(target):
            staged = repository.stage_next(target)
        self.assertEqual((staged.version, staged.dir.name), (1, ".1.tmp"))
        self.fill(staged)
        self.assertFalse((target / "1").exists())
        self.assertEqual(staged.publish(), target / "1")
        self.assertFalse(staged.dir.exists())
        self.assertEqual(oct((target / "1" / "config.json").stat().st_mode & 0o777), "0o644")
        # Not 04 or 2: the next is one above the highest number the server would serve.
        (target / "7").mkdir()
        (target / "07").mkdir()
        (target / ".9.tmp").mkdir()
        staged = repository.stage_next(target)
        self.assertEqual(staged.version, 8)
        # A version missing a file is not published.
        with self.assertRaises(repository.RepositoryError):
            staged.publish()
        staged.discard()
        self.assertEqual(repository.versions(target), [1, 7])

    def test_a_stale_staging_directory_is_replaced(self):
        target = repository.model_dir(self.repo, "m")
        (target / ".1.tmp").mkdir()
        (target / ".1.tmp" / "half-written").write_text("x")
        staged = repository.stage_next(target)
        self.assertEqual(list(staged.dir.iterdir()), [])

    def test_flat_models_bad_names_and_missing_repositories_are_refused(self):
        (self.repo / "flat").mkdir()
        (self.repo / "flat" / "config.json").write_text("{}")
        for name, why in [("flat", "Move it into"), ("a/b", "not a model name"), ("x.tmp", "not a model name"),
                          ("..", "not a model name")]:
            with self.assertRaises(repository.RepositoryError) as caught:
                repository.model_dir(self.repo, name)
            self.assertIn(why, str(caught.exception))
        with self.assertRaises(repository.RepositoryError):
            repository.model_dir(self.repo / "missing", "m")

    @unittest.skipIf(os.getuid() == 0, "root may write anywhere")
    def test_an_unwritable_model_directory_says_what_to_do(self):
        (self.repo / "ro").mkdir(mode=0o555)
        with self.assertRaises(repository.RepositoryError) as caught:
            repository.model_dir(self.repo, "ro")
        self.assertIn("TRAIN_USER", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
