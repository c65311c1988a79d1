"""The coursework graders work both ways: they pass the library's answers and fail wrong ones, usefully.

Each grader in ``coursework/<assignment>/`` is run, as a student runs it, against

* a reference answer built on the library (``tests/coursework_solutions/<name>_reference.py``): every
  check must pass;
* the untouched starter file: it must fail, and every failure must say which gap is still empty;
* each planted wrong answer (``<name>_wrong*.py``, each with a classic mistake described in its
  docstring): the checks aimed at that mistake must fail with a message that points at it, and the
  others must pass.

The graders run in this process with ``pytest.main`` (a few seconds each); one test runs the README's
command in a subprocess, exactly as a new student would, fills the gap of assignment 1 and grades it.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSEWORK = ROOT / "coursework"
SOLUTIONS = Path(__file__).resolve().parent / "coursework_solutions"

# assignment folder -> (starter file, name of its reference answer in SOLUTIONS)
ASSIGNMENTS = {
    "01_backward": ("softsign.py", "softsign"),
    "02_conv": ("conv2d.py", "conv2d"),
    "03_vae": ("vae_loss.py", "vae_loss"),
    "04_gan": ("gan_step.py", "gan_step"),
    "05_masks": ("masks.py", "masks"),
    "06_kmeans": ("kmeans.py", "kmeans"),
    "07_gradient_penalty": ("gradient_penalty.py", "gradient_penalty"),
    "08_coupling": ("coupling.py", "coupling"),
    "09_ddpm_loss": ("ddpm_loss.py", "ddpm_loss"),
}

# For each planted wrong answer in SOLUTIONS: its assignment, the checks that must fail, each with a
# fragment of the message that names the mistake, and checks that must still pass (the grader blames the
# right part).
PLANTED = {
    "softsign_wrong.py": (
        "01_backward",
        {"test_gradcheck": "finite differences give",
         "test_same_derivative_as_autograd_through_the_library_ops": "quotient rule"},
        # a wrong derivative written with Tensor ops still differentiates consistently
        ["test_forward_is_still_softsign", "test_backward_leaves_the_incoming_gradient_alone",
         "test_second_derivative_by_gradgradcheck"],
    ),
    "softsign_wrong_eps.py": (
        "01_backward",
        # off by 2e-7 of its value: the message must print enough digits for the two numbers to differ
        {"test_same_derivative_as_autograd_through_the_library_ops": "0.791560928"},
        ["test_gradcheck", "test_second_derivative_by_gradgradcheck", "test_backward_keeps_float32"],
    ),
    "softsign_wrong_constant.py": (
        "01_backward",
        {"test_second_derivative_by_gradgradcheck": "second derivative"},
        # the first derivative is right: only gradgradcheck sees a factor the graph took for a constant
        ["test_backward_returns_one_gradient_shaped_like_the_input", "test_backward_keeps_float32", "test_gradcheck",
         "test_same_derivative_as_autograd_through_the_library_ops", "test_a_network_of_softsign_units_learns_xor"],
    ),
    "conv2d_wrong.py": (
        "02_conv",
        {"test_backward_by_gradcheck": "gradient of input 0",
         "test_backward_matches_the_library": "your gradient of x differs"},
        ["test_im2col_rows_are_the_windows", "test_col2im_is_the_adjoint_of_im2col",
         "test_forward_matches_the_library"],
    ),
    "vae_loss_wrong.py": (
        "03_vae",
        {"test_reparameterize_uses_sigma_equal_to_exp_half_logvar": "σ = exp(logvar) is the variance",
         "test_a_small_vae_trained_with_your_loss_has_a_good_elbo": "disagree about σ"},
        # gradcheck cannot see a convention bug: these pass, which is the lesson of the assignment
        ["test_gradients_flow_through_the_sample", "test_vae_loss_gradcheck", "test_gaussian_kl_known_values"],
    ),
    "vae_loss_wrong_mean.py": (
        "03_vae",
        {"test_vae_loss_matches_the_library_on_a_real_model": "sum over pixels, do not average",
         "test_a_small_vae_trained_with_your_loss_has_a_good_elbo": "averaged over the 36 pixels instead of summed"},
        # the sampler and the KL are right: the training check must not blame σ
        ["test_reparameterize_uses_sigma_equal_to_exp_half_logvar", "test_reparameterize_matches_the_library",
         "test_gaussian_kl_matches_the_library_and_its_gradient", "test_vae_loss_is_an_average_over_the_batch"],
    ),
    "gan_step_wrong.py": (
        "04_gan",
        {"test_the_discriminator_step_sends_no_gradient_into_the_generator": "not detached",
         "test_generator_step_descends_the_non_saturating_loss": "g_optimizer.zero_grad()"},
        ["test_discriminator_loss_is_minus_the_value_function", "test_k_discriminator_steps_then_one_generator_step",
         "test_discriminator_steps_ascend_the_value_function"],
    ),
    "gan_step_wrong_sum.py": (
        "04_gan",
        {"test_discriminator_loss_is_minus_the_value_function": "you summed over the minibatch",
         "test_discriminator_steps_ascend_the_value_function": "your loss sums over the minibatch",
         "test_train_iteration_returns_the_losses_of_its_last_steps": "a sum over the minibatch"},
        # every zero_grad is in place: no check may send the student looking for one
        ["test_generator_step_descends_the_non_saturating_loss", "test_k_discriminator_steps_then_one_generator_step",
         "test_the_discriminator_step_sends_no_gradient_into_the_generator", "test_the_other_network_is_left_alone"],
    ),
    "gan_step_wrong_extra.py": (
        "04_gan",
        {"test_k_discriminator_steps_then_one_generator_step": "g_optimizer.step() was called 3 times",
         "test_the_other_network_is_left_alone": "g_optimizer.step() was called 2 times"},
        ["test_the_discriminator_step_sends_no_gradient_into_the_generator",
         "test_discriminator_steps_ascend_the_value_function", "test_generator_step_descends_the_non_saturating_loss"],
    ),
    "masks_wrong.py": (
        "05_masks",
        {"test_a_network_with_your_masks_is_autoregressive": "may only see the variables before it",
         "test_a_made_with_your_masks_learns_a_markov_chain": "below the data's entropy",
         "test_pixelcnn_masks_match_the_library": "should be",
         "test_a_pixelcnn_stack_never_sees_the_pixel_it_predicts": "must leave the centre out"},
        ["test_input_degrees_follow_the_ordering", "test_hidden_degrees_obey_the_degree_rule"],
    ),
    "masks_wrong_transposed.py": (
        "05_masks",
        {"test_pixelcnn_masks_match_the_library": "transposed",
         "test_a_pixelcnn_stack_never_sees_the_pixel_it_predicts": "sees the pixels below it"},
        ["test_made_masks_match_the_library", "test_a_network_with_your_masks_is_autoregressive"],
    ),
    "kmeans_wrong.py": (
        "06_kmeans",
        {"test_kmeans_plus_plus_draws_in_proportion_to_the_squared_distance": "in proportion to D: square"},
        # D-weighted seeds are still distinct data points, and good enough for the digits
        ["test_kmeans_plus_plus_draws_distinct_data_points", "test_kmeans_keeps_the_best_of_its_runs",
         "test_lloyd_never_raises_the_inertia_and_reaches_a_fixed_point",
         "test_kmeans_clusters_the_digits_as_well_as_the_library"],
    ),
    "kmeans_wrong_last.py": (
        "06_kmeans",
        {"test_kmeans_keeps_the_best_of_its_runs": "not the last one"},
        ["test_kmeans_plus_plus_draws_in_proportion_to_the_squared_distance",
         "test_update_moves_each_centre_to_the_mean_of_its_points",
         "test_lloyd_never_raises_the_inertia_and_reaches_a_fixed_point"],
    ),
    "gradient_penalty_wrong.py": (
        "07_gradient_penalty",
        {"test_gradient_norms_are_differentiable_again": "create_graph=True",
         "test_the_penalty_gradient_reaches_the_critics_weights": "create_graph=True",
         "test_a_linear_critic_trained_with_your_penalty_settles_at_its_optimum": "sent no gradient into the weights"},
        # the value is right: only the gradient in D's weights is missing
        ["test_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared",
         "test_penalty_matches_the_library_at_the_points_it_chose",
         "test_gradient_norms_match_the_library_on_a_tanh_critic",
         "test_interpolate_lies_on_the_segments_with_one_epsilon_per_sample"],
    ),
    "gradient_penalty_wrong_batch_norm.py": (
        "07_gradient_penalty",
        {"test_gradient_norms_of_a_linear_critic_are_its_weights_norm": "the norm over the whole batch",
         "test_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared": "over the whole batch",
         "test_penalty_matches_the_library_at_the_points_it_chose": "one norm over the whole batch"},
        # one norm of a batch is still differentiable, and ε is right
        ["test_the_penalty_gradient_reaches_the_critics_weights", "test_gradient_norms_are_differentiable_again",
         "test_interpolate_lies_on_the_segments_with_one_epsilon_per_sample", "test_epsilon_is_uniform_on_0_1"],
    ),
    "gradient_penalty_wrong_epsilon.py": (
        "07_gradient_penalty",
        {"test_interpolate_lies_on_the_segments_with_one_epsilon_per_sample": "one ε for the whole batch",
         "test_penalty_matches_the_library_at_the_points_it_chose": "one ε for the whole batch"},
        # a linear critic's gradient is the same everywhere: the value and the training cannot see ε
        ["test_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared",
         "test_the_penalty_gradient_reaches_the_critics_weights",
         "test_gradient_norms_of_a_linear_critic_are_its_weights_norm",
         "test_a_linear_critic_trained_with_your_penalty_settles_at_its_optimum"],
    ),
    "coupling_wrong.py": (
        "08_coupling",
        {"test_log_det_is_log_abs_det_of_the_jacobian": "It is the negative",
         "test_forward_matches_the_library": "yours is its negative",
         "test_a_flow_of_your_couplings_learns_the_two_moons": "by the library's density"},
        ["test_the_kept_half_passes_unchanged", "test_inverse_undoes_forward", "test_log_det_has_one_value_per_example",
         "test_forward_differentiates_by_gradcheck"],
    ),
    "coupling_wrong_inverse.py": (
        "08_coupling",
        {"test_inverse_undoes_forward": "Your inverse multiplies by exp(s)"},
        # the density uses the forward alone: the log-det and the training are right
        ["test_forward_matches_the_library", "test_log_det_is_log_abs_det_of_the_jacobian",
         "test_log_det_has_one_value_per_example", "test_a_flow_of_your_couplings_learns_the_two_moons"],
    ),
    "coupling_wrong_batch.py": (
        "08_coupling",
        {"test_log_det_has_one_value_per_example": "the sum over the whole batch",
         "test_log_det_is_log_abs_det_of_the_jacobian": "the sum over the whole batch",
         "test_a_flow_of_your_couplings_learns_the_two_moons": "by the library's density"},
        ["test_the_kept_half_passes_unchanged", "test_inverse_undoes_forward"],
    ),
    "ddpm_loss_wrong.py": (
        "09_ddpm_loss",
        {"test_q_sample_is_exact_for_given_noise": "the square roots are missing",
         "test_q_sample_has_the_mean_and_variance_of_q": "yours is ᾱ_t x_0",
         "test_loss_matches_the_library_for_fixed_t_and_noise": "Your q_sample is wrong (x_t = ᾱ_t x_0",
         "test_a_denoiser_trained_with_your_loss_learns_the_ring": "below 0.25 passes"},
        # t, ε and the target are right
        ["test_loss_draws_t_uniformly_from_1_to_T_and_the_noise_from_a_standard_normal"],
    ),
    "ddpm_loss_wrong_step.py": (
        "09_ddpm_loss",
        {"test_q_sample_is_exact_for_given_noise": "alpha_bars[t − 1]",
         "test_q_sample_has_the_mean_and_variance_of_q": "not alpha_bars[t − 1]",
         "test_loss_matches_the_library_for_fixed_t_and_noise": "one step too early"},
        # with T = 100 one step earlier is nearly the same noise level: the denoiser still learns
        ["test_loss_draws_t_uniformly_from_1_to_T_and_the_noise_from_a_standard_normal",
         "test_a_denoiser_trained_with_your_loss_learns_the_ring"],
    ),
    "ddpm_loss_wrong_target.py": (
        "09_ddpm_loss",
        {"test_loss_matches_the_library_for_fixed_t_and_noise": "the squared error against x_0",
         "test_loss_draws_t_uniformly_from_1_to_T_and_the_noise_from_a_standard_normal": "the target is x_0",
         "test_a_denoiser_trained_with_your_loss_learns_the_ring": "asks for another target"},
        # x_t itself is made right
        ["test_q_sample_is_exact_for_given_noise", "test_q_sample_has_the_mean_and_variance_of_q"],
    ),
}


class _Outcomes:
    """A pytest plugin that keeps each check's outcome and failure text."""

    def __init__(self):
        self.results = {}

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.when == "call" or report.failed:
            self.results[name] = (report.outcome, report.longreprtext)


def grade(assignment: str, solution: Path | None = None):
    """Run one grader in this process; return (exit code, {check: (outcome, failure text)})."""
    args = [str(COURSEWORK / assignment), "-q", "-p", "no:cacheprovider"]
    if solution is not None:
        args += ["--solution", str(solution)]
    outcomes = _Outcomes()
    saved_path, saved_conftest = list(sys.path), sys.modules.get("conftest")
    try:
        code = pytest.main(args, plugins=[outcomes])
    finally:
        # Forget what the nested run imported by file path (graders, the coursework conftest, solutions),
        # so the next run imports its own; library modules stay, one copy of each class.
        for name in [n for n in sys.modules if n.startswith(("test_0", "solution_"))]:
            del sys.modules[name]
        if saved_conftest is not None:
            sys.modules["conftest"] = saved_conftest
        sys.path[:] = saved_path
    return int(code), outcomes.results


def test_the_root_test_run_does_not_collect_the_graders():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["tool:pytest"]["testpaths"].split() == ["tests"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grader_passes_the_reference_answer(assignment):
    code, results = grade(assignment, SOLUTIONS / f"{ASSIGNMENTS[assignment][1]}_reference.py")
    failed = {name: text for name, (outcome, text) in results.items() if outcome != "passed"}
    assert not failed, f"{assignment}: the reference answer fails {failed}"
    assert code == 0 and len(results) >= 6


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grader_fails_the_untouched_starter_naming_the_gap(assignment):
    starter = ASSIGNMENTS[assignment][0]
    code, results = grade(assignment)  # the default: the starter file in the assignment's folder
    failed = {name: text for name, (outcome, text) in results.items() if outcome == "failed"}
    assert code == 1 and len(failed) >= len(results) - 2, (
        f"{assignment}: the untouched starter passes {len(results) - len(failed)} checks")
    for name, text in failed.items():
        assert "not filled in yet" in text and starter in text and "YOUR CODE HERE" in text, (name, text)


def test_every_planted_wrong_answer_is_in_the_table():
    assert sorted(path.name for path in SOLUTIONS.glob("*_wrong*.py")) == sorted(PLANTED)


@pytest.mark.parametrize("planted", PLANTED)
def test_grader_fails_a_planted_wrong_answer_where_it_is_wrong(planted):
    assignment, must_fail, must_pass = PLANTED[planted]
    code, results = grade(assignment, SOLUTIONS / planted)
    assert code == 1
    for name, fragment in must_fail.items():
        outcome, text = results[name]
        assert outcome == "failed", f"{planted}: {name} did not catch the planted mistake"
        assert fragment in text, f"{planted}: {name} failed without saying {fragment!r}:\n{text}"
        assert "Traceback" not in text and len(text) < 1500, f"{name}: a failure should read as a message:\n{text}"
    for name in must_pass:
        assert results[name][0] == "passed", f"{planted}: {name} blames a part that is right:\n{results[name][1]}"


def test_a_new_student_fills_assignment_1_and_grades_it_with_the_readme_command(tmp_path):
    """The README's story, in a subprocess: grade the starter, fill its one gap, grade again."""
    command = [sys.executable, "-m", "pytest", "coursework/01_backward", "-q", "-p", "no:cacheprovider"]
    before = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert before.returncode == 1 and "not filled in yet" in before.stdout, before.stdout[-2000:]

    gap = 'raise NotImplementedError("your code here: Softsign.backward")'
    starter = (COURSEWORK / "01_backward" / "softsign.py").read_text()
    assert gap in starter, "the starter's gap changed: update the line this test fills in"
    answer = starter.replace(gap, "return grad / (1 + x.abs()) ** 2")  # x = self.inputs[0], a Tensor
    mine = tmp_path / "my_softsign.py"
    mine.write_text(answer)
    after = subprocess.run(command + ["--solution", str(mine)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0 and "all checks pass" in after.stdout, after.stdout[-2000:]
