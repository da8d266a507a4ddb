# patchpnp: patch-based plug-and-play inference with diffusion priors for MRI.
# One command reproduces Roy et al. 2025 on the embedded demo (config/config.yaml)
# or, with config/paper.yaml and a fastMRI location, at the paper's size.
import gc

from snakemake.utils import min_version

min_version("9.0")

# Snakemake's own modules are imported by now and live as long as the process: frozen,
# the garbage collector never traverses them again, which saves about 0.7 s of CPU per
# Snakemake process (a dry run; on a cluster, every job is one). See patchpnp/startup.py.
gc.freeze()


# The demo config is the default. A --configfile on the command line replaces it
# rather than being merged into it (Snakemake would otherwise merge the demo's
# datasets into the paper's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/mri.smk"
include: "workflow/rules/solvers.smk"
include: "workflow/rules/resolution.smk"
include: "workflow/rules/seeds.smk"
include: "workflow/rules/gpu_check.smk"
include: "workflow/rules/padis.smk"
include: "workflow/rules/generalization.smk"


report: "workflow/report/workflow.rst"


# On a cluster, aggregation and plotting run on the submitting node: they take
# seconds, and a queued job would take minutes. lpips_weights downloads: compute
# nodes may have no internet access.
localrules:
    all,
    data,
    priors,
    infer,
    results,
    tune,
    tune_summary,
    lpips_weights,
    tables,
    figure_memory,
    figure_paper_scale,
    paper_profile,
    figure_qualitative,
    mri,
    mri_tune,
    mri_table,
    figure_mri,
    solvers,
    solvers_table,
    uncertainty,
    uncertainty_table,
    figure_uncertainty,
    resolution,
    resolution_tables,
    seeds,
    seeds_tables,
    seeds_table,
    padis,
    padis_tune,
    padis_table,
    figure_padis,
    generalization,
    generalization_table,


rule all:
    default_target: True
    input:
        plan.split_files(),
        rules.priors.input,
        rules.infer.input,
        rules.results.input,
        # Multicoil MRI (mri.in_all: true in config/paper.yaml; the demo runs it as
        # `snakemake mri`, its own 30 minutes).
        rules.mri.input if config["mri"]["in_all"] else [],
        # Beyond the paper (docs/methods.md section 12): claim (b) across solvers and
        # posterior uncertainty (in all in config/paper.yaml; the demo runs each as its
        # own target, `snakemake solvers` / `snakemake uncertainty`, 30 minutes each).
        rules.solvers.input if config["solvers"]["in_all"] else [],
        rules.uncertainty.input if config["uncertainty"]["in_all"] else [],
        # The grid on more slices, whose intervals meet the half-width bars
        # (snakemake resolution; in all where resolution.in_all).
        rules.resolution.input if config["resolution"]["in_all"] else [],
        # Every claim under more training runs of the priors (snakemake seeds; in all
        # where seeds.in_all).
        rules.seeds.input if config["seeds"]["in_all"] else [],
        # PaDIS as a system: its position-aware prior and solvers, deblurring and CT
        # (snakemake padis; in all where padis.in_all).
        rules.padis.input if config["padis"]["in_all"] else [],
        # Data efficiency and distribution shift: the priors retrained on fewer slices,
        # evaluated in distribution and on a shift (snakemake generalization; in all
        # where generalization.in_all).
        rules.generalization.input
        if config.get("generalization", {}).get("in_all")
        else [],


onsuccess:
    print(
        "\npatchpnp: done. Tables: results/tables/ (table1.md, table1.tex, extended.md);"
        " figures: results/figures/; build the report with"
        " `snakemake --report results/report.html`."
    )
    if os.path.exists(f"{layout.MRI_TABLE}.md"):
        print(
            f"patchpnp: multicoil MRI (snakemake mri): {layout.MRI_TABLE}.md, {layout.MRI_FIGURE}.png"
        )
    for name, path in (
        ("solvers", layout.SOLVERS_TABLE),
        ("uncertainty", layout.UNCERTAINTY_TABLE),
        ("resolution", f"{layout.RESOLUTION_TABLES}/resolution"),
        ("seeds", layout.SEEDS_CLAIMS),
        ("padis", layout.PADIS_TABLE),
        ("generalization", layout.GENERALIZATION_TABLE),
    ):
        if os.path.exists(f"{path}.md"):
            print(f"patchpnp: {name} (snakemake {name}): {path}.md")
    if lpips_note():
        print(lpips_note())
