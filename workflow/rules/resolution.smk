# snakemake resolution (config section resolution): the grid's cells and baselines
# again, with the same priors, settings and keyed random streams, on more evaluation
# slices per dataset (the resolution split: each dataset's own, then the volumes after
# its tuning ones), so that the paired intervals resolve the paper's 0.0-0.4 dB
# effects. Its tables, with the check of the half-width bars (resolution.md), go to
# results/resolution/tables/. Its own target and budget; in all where resolution.in_all.
_RESOLUTION_DATA = layout.SPLIT.replace("{split}", layout.RESOLUTION_SPLIT)
_RESOLUTION_OPTIONS = inference_options(batch_images=RESOLUTION["batch_images"])


use rule infer_cell as resolution_cell with:
    input:
        data=_RESOLUTION_DATA,
        prior=layout.PRIOR,
        lpips=lpips_input(),
        calibration=calibration_input,
    output:
        recon=layout.RESOLUTION_RECON,
        metrics=layout.RESOLUTION_METRICS,
    log:
        f"{LOGS}/resolution/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/resolution/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    params:
        rule="resolution_cell",
        options=_RESOLUTION_OPTIONS,


use rule infer_baseline as resolution_baseline with:
    input:
        data=_RESOLUTION_DATA,
        lpips=lpips_input(),
    output:
        recon=layout.RESOLUTION_BASELINE_RECON,
        metrics=layout.RESOLUTION_BASELINE_METRICS,
    log:
        f"{LOGS}/resolution/{{dataset}}/baseline/{{task}}.log",
    params:
        options=_RESOLUTION_OPTIONS,


use rule tables as resolution_tables with:
    input:
        metrics=resolution_plan.metrics_files(),
        profiles=expand(layout.PROFILE, solver=PROFILE["solvers"]),
        paper_scale=PAPER_SCALE_INPUT,
        claims_metrics=[],
    output:
        table1=f"{layout.RESOLUTION_TABLES}/{layout.TABLE1_STEM}.csv",
        table1_md=f"{layout.RESOLUTION_TABLES}/{layout.TABLE1_STEM}.md",
        table1_tex=f"{layout.RESOLUTION_TABLES}/{layout.TABLE1_STEM}.tex",
        extended=f"{layout.RESOLUTION_TABLES}/{layout.EXTENDED_STEM}.csv",
        extended_md=f"{layout.RESOLUTION_TABLES}/{layout.EXTENDED_STEM}.md",
        claims=f"{layout.RESOLUTION_TABLES}/{layout.CLAIMS_STEM}.csv",
        claims_md=f"{layout.RESOLUTION_TABLES}/{layout.CLAIMS_STEM}.md",
        resolution=report(
            f"{layout.RESOLUTION_TABLES}/{layout.RESOLUTION_STEM}.csv",
            caption="../report/resolution.rst",
            category="Resolution",
        ),
        resolution_md=f"{layout.RESOLUTION_TABLES}/{layout.RESOLUTION_STEM}.md",
    log:
        f"{LOGS}/resolution/tables.log",


rule resolution:
    input:
        rules.resolution_tables.output,
