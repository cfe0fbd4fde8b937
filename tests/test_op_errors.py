"""Errors raised while a compiled call runs reach the user with the sentence that names them first."""

import keras
import numpy as np
import pytest

from kerastrainer.op_errors import core_message, raised_in_python
from tests.helpers import BoringModule, quiet_trainer, regression_data


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


def test_an_exception_of_a_generator_is_raised_as_itself():
    x, y = regression_data(16)

    def batches():
        yield x[:8], y[:8]
        raise KeyError("no such column")

    with pytest.raises(KeyError, match=r"^'no such column'"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), batches)


def test_a_generator_of_inconsistent_shapes_names_the_shapes():
    x, y = regression_data(16)

    def batches():
        yield x[:8], y[:8]
        yield x[:8, :2], y[:8]

    with pytest.raises(TypeError, match=r"^`generator` yielded an element of shape \(8, 2\) where an "
                                        r"element of shape \(None, 3\) was expected"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), batches)


class Broken(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.x, self.y = regression_data(24)

    def __len__(self):
        return 3

    def __getitem__(self, index):
        if index == 1:
            raise ValueError("row 9 of my table is damaged")
        return self.x[:8], self.y[:8]


def test_an_exception_of_a_pydataset_is_raised_as_itself():
    with pytest.raises(ValueError, match=r"^row 9 of my table is damaged"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), Broken())


def test_core_message_joins_an_assertion_and_ignores_other_messages():
    message = ("Graph execution error:\n\nDetected at node a defined at (most recent call last):\n"
               '  File "x.py", line 3, in f\n\nassertion failed: [the loss is bad at step] [4]\n'
               "\t [[{{node a}}]] [Op:__inference_f_1]")
    assert core_message(message) == "the loss is bad at step 4"
    assert core_message("Some other error") is None


def test_raised_in_python_rebuilds_built_in_types_only():
    text = "Graph execution error:\nMyError: x\nTraceback (most recent call last):\n  File ..."
    assert raised_in_python(text) is None
    error = raised_in_python(text.replace("MyError", "ZeroDivisionError"))
    assert isinstance(error, ZeroDivisionError) and str(error) == "x"
    assert raised_in_python("Graph execution error:\nKeyError: 'a'") is None  # no traceback: not Python's
