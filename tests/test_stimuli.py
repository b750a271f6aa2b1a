import numpy as np
import pytest

from hhbench import stimuli
from hhbench.errors import HHBenchError


def test_step_defaults_follow_spec():
    s = stimuli.step()
    assert s.n_samples == 2560 and s.fs_khz == 20.0 and s.dt_ms == pytest.approx(0.05)
    i = s.current_ua[0]
    onset = 356  # 17.8 ms * 20 kHz
    assert np.all(i[:onset] == 0) and np.all(i[onset:] == 20.0)
    assert s.params == {"amplitude_ua": 20.0, "onset_ms": 17.8}
    assert not s.batched and s.squeeze(np.zeros((1, 3))).shape == (3,)


def test_sine_is_zero_before_onset_and_a_sine_after():
    s = stimuli.sine(0.1, amplitude_ua=80.0, onset_ms=18.7)
    t = s.t_ms
    i = s.current_ua[0]
    on = t >= 18.7 - 1e-9
    assert np.all(i[~on] == 0)
    np.testing.assert_allclose(i[on], 80 * np.sin(2 * np.pi * 0.1 * (t[on] - 18.7)), atol=1e-12)
    # 0.1 kHz: period 10 ms = 200 samples
    first = np.flatnonzero(on)[0]
    np.testing.assert_allclose(i[first:first + 200], i[first + 200:first + 400], atol=1e-9)


def test_batches_one_row_per_parameter():
    s = stimuli.step([0.0, 5.0, 10.0])
    assert s.current_ua.shape == (3, 2560) and s.batched
    assert s.current_ua[:, -1].tolist() == [0.0, 5.0, 10.0]
    assert stimuli.sine([0.01, 0.5, 2.0]).batch_size == 3


def test_noise_is_seeded_gaussian_and_repeatable():
    a = stimuli.white_noise(20.0, seed=3, batch=50)
    b = stimuli.white_noise(20.0, seed=3, batch=50)
    c = stimuli.white_noise(20.0, seed=4, batch=50)
    assert np.array_equal(a.current_ua, b.current_ua)
    assert not np.array_equal(a.current_ua, c.current_ua)
    on = a.t_ms >= 18.7 - 1e-9
    assert np.all(a.current_ua[:, ~on] == 0)
    assert a.current_ua[:, on].std() == pytest.approx(20.0, rel=0.02)
    assert abs(a.current_ua[:, on].mean()) < 0.5


def test_any_length_and_rate():
    s = stimuli.step(5.0, onset_ms=1.0, n_samples=100, fs_khz=40.0)
    assert s.n_samples == 100 and s.dt_ms == 0.025
    assert np.flatnonzero(s.current_ua[0])[0] == 40


def test_repeat_tiles_the_batch():
    s = stimuli.step(7.0).repeat(5)
    assert s.current_ua.shape == (5, 2560) and np.all(s.current_ua == s.current_ua[0])


@pytest.mark.parametrize("make, message", [
    (lambda: stimuli.Stimulus(current_ua=[1.0, np.nan]), "NaN or infinite"),
    (lambda: stimuli.Stimulus(current_ua=[1.0, np.inf]), "NaN or infinite"),
    (lambda: stimuli.Stimulus(current_ua=[]), "empty"),
    (lambda: stimuli.Stimulus(current_ua=np.zeros((2, 2, 2))), "3-D"),
    (lambda: stimuli.Stimulus(current_ua=[1.0], fs_khz=0), "sampling rate"),
    (lambda: stimuli.Stimulus(current_ua=[1.0], fs_khz=-20), "sampling rate"),
    (lambda: stimuli.white_noise(-1.0), "sigma"),
    (lambda: stimuli.sine(-0.1), "frequency"),
    (lambda: stimuli.step(n_samples=0), "samples"),
    (lambda: stimuli.make("ramp"), "unknown stimulus"),
])
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(HHBenchError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_stimulus_is_immutable():
    s = stimuli.step()
    with pytest.raises(ValueError):
        s.current_ua[0, 0] = 1.0
