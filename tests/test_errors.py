"""clipviz.errors: the types subclass what users already catch, and messages keep their words."""

import pickle

import pytest

from clipviz.errors import (
    BadCheckpoint,
    ClipvizError,
    DeviceUnavailable,
    InvalidArgument,
    MissingFile,
    WrongType,
    describe,
)


@pytest.mark.parametrize("cls, builtin", [(InvalidArgument, ValueError), (WrongType, TypeError),
                                          (MissingFile, FileNotFoundError), (BadCheckpoint, ValueError),
                                          (DeviceUnavailable, RuntimeError)])
def test_each_type_is_a_clipviz_error_and_the_builtin_users_catch(cls, builtin):
    error = cls("layers", "99 is out of range: pass 0..3")
    assert isinstance(error, ClipvizError) and isinstance(error, builtin)
    assert str(error) == "layers: 99 is out of range: pass 0..3"
    assert error.argument == "layers"
    again = pickle.loads(pickle.dumps(error))  # errors cross process boundaries (Ray, multiprocessing)
    assert type(again) is cls and str(again) == str(error)


def test_a_single_message_is_kept_as_it_is():
    assert str(MissingFile("image file not found: x.png")) == "image file not found: x.png"
    assert MissingFile("x").argument is None


def test_describe_is_the_one_app_error_format():
    assert describe(InvalidArgument("lang", "no templates for 'xx'")) == "lang: no templates for 'xx'"
    assert describe(KeyError("a")) == "KeyError: 'a'"
    assert describe(RuntimeError()) == "RuntimeError"
