"""The Dashboard, headless: build it, drive the map's selection, check what reaches the other apps."""

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from clipviz.widgets.dashboard import TABS, Dashboard  # noqa: E402


@pytest.fixture(scope="module")
def dashboard(tiny_hooked):
    return Dashboard(tiny_hooked["clip"])


def _errors(dashboard):
    return [dashboard.last_error, dashboard.embedding.last_error, dashboard.zeroshot.last_error,
            dashboard.attention.last_error]


def test_builds_three_apps_in_tabs(dashboard):
    tabs = dashboard.tabs
    assert tuple(tabs.titles) == TABS
    assert tabs.children[0] is dashboard.embedding and tabs.children[2] is dashboard.attention
    assert list(tabs.children[1].children) == [dashboard.selection_labels, dashboard.zeroshot]
    assert tabs.children[3] is dashboard.heads
    assert _errors(dashboard) == [None] * 4
    assert len(dashboard.images) == 24 and len(dashboard.texts) == 30
    assert dashboard.zeroshot.result is not None  # the zero-shot chart was computed
    assert dashboard.attention.heatmap is not None  # and the heatmap
    assert "clipviz-attention" in dashboard.attention._dom_classes
    assert "24 images" in dashboard._header.value


def test_selecting_an_image_in_the_map_reaches_zeroshot_and_heatmaps(dashboard):
    embedding = dashboard.embedding
    image_rows = np.flatnonzero(embedding.embeddings.is_image)
    embedding.map.selection = image_rows[[5, 6, 7, 8]].astype("uint32")  # a lasso in the browser
    assert embedding.selected_rows == list(image_rows[[5, 6, 7, 8]])
    assert "Map selection: 4 images" in dashboard.selection_labels.value
    assert sum(n for _, _, n in dashboard.selection_top) <= 4 and len(dashboard.selection_top) == 5
    row = int(image_rows[5])
    embedding.select(row)
    assert embedding.selected_row == row
    assert dashboard.state.image_index == 5
    assert dashboard.zeroshot.state.image_index == 5
    assert dashboard.attention.state.image_index == 5
    assert dashboard.attention.state.prompt == dashboard.prompts[5]  # the object named in scene 5
    # the apps really recomputed for that image
    assert np.array_equal(np.asarray(dashboard.zeroshot.result.images[0]), np.asarray(dashboard.images[5]))
    assert np.array_equal(np.asarray(dashboard.attention.capture.image), np.asarray(dashboard.images[5]))
    assert dashboard.attention.capture.text == dashboard.prompts[5]
    assert "selected image 5" in dashboard._header.value
    assert _errors(dashboard) == [None] * 4


def test_choosing_an_image_in_another_tab_highlights_it_on_the_map(dashboard):
    dashboard.zeroshot.state.image_index = 9
    row = int(np.flatnonzero(dashboard.embedding.embeddings.is_image)[9])
    assert dashboard.embedding.selected_rows == [row] and list(dashboard.embedding.map.zoom_to) == [row]
    assert dashboard.attention.state.image_index == 9


def test_more_tabs_can_be_added(tiny_hooked):
    import ipywidgets

    board = Dashboard(tiny_hooked["clip"], images=[np.zeros((16, 16, 3), np.uint8)], texts=["a", "b"])
    board.add_tab("notes", ipywidgets.HTML("notes"))
    assert board.tabs.titles[-1] == "notes"
    board.show_tab("notes")
    assert board.tabs.selected_index == 4
    with pytest.raises(ValueError, match="already a tab"):
        board.add_tab("map", ipywidgets.HTML())


def test_selecting_a_text_makes_it_the_heatmap_prompt(dashboard):
    embedding = dashboard.embedding
    row = int(np.flatnonzero(embedding.embeddings.is_text)[7])
    embedding.select(row)
    assert dashboard.attention.state.prompt == dashboard.texts[7]
    assert dashboard.attention.capture.text == dashboard.texts[7]
    assert _errors(dashboard) == [None] * 4


def test_a_bad_selection_is_a_message_not_an_exception(dashboard):
    dashboard.select_image(999)
    assert dashboard.last_error.startswith("IndexError: there is no image 999")
    assert "⚠" in dashboard._errors.outputs[0]["text"]
    dashboard.select_image(1)  # a good one clears it
    assert dashboard.last_error is None and dashboard._errors.outputs == ()
    assert dashboard.attention.state.image_index == 1


def test_show_tab(dashboard):
    dashboard.show_tab("heatmaps")
    assert dashboard.tabs.selected_index == 2
    with pytest.raises(ValueError, match="tab must be one of"):
        dashboard.show_tab("nope")


def test_own_images_and_texts(tiny_hooked, photos):
    board = Dashboard(tiny_hooked["clip"], images=photos, texts=["a red circle", "a blue square"],
                      heatmap_method="attention", tab="heatmaps")
    assert board.tabs.selected_index == 2
    assert board.prompts == ["a red circle"] * 3
    assert [name for name, _ in board.zeroshot._picker.options] == ["image 0", "image 1", "image 2"]
    assert board.zeroshot.result.labels == ["a red circle", "a blue square"]
    board.select_image(2)
    assert board.attention.state.image_index == 2 and board.zeroshot.state.image_index == 2
    assert _errors(board) == [None] * 4
    with pytest.raises(ValueError, match="one per image"):
        Dashboard(tiny_hooked["clip"], images=photos, texts=["a cat"], prompts=["a cat"])


def test_chinese_clip_speaks_chinese(tiny_hooked):
    board = Dashboard(tiny_hooked["chinese_clip"])
    assert board.prompts[0].startswith("一个")
    assert board.texts[0] == "红色圆形"
    assert _errors(board) == [None] * 4
