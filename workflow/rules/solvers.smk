# Beyond the paper (docs/methods.md section 12): claim (b) across solvers, and posterior
# uncertainty, each its own target (snakemake solvers / snakemake uncertainty) and
# budget; part of all where solvers.in_all / uncertainty.in_all (config/paper.yaml).
# deepinv's solvers' cells live under results/solvers/ in the grid's cell layout; our
# solvers' cells are the grid's own (infer.smk).


# A deepinv solver's data-term weight, swept per (prior, solver, task) on the tuning
# slices; the cells read the choice from this table.
rule solvers_tune:
    input:
        data=plan.tune_files(),
        prior=layout.PRIOR,
    output:
        layout.SOLVERS_TUNE,
    log:
        f"{LOGS}/solvers/tune/{{prior}}/{{solver}}/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/solvers/tune/{{prior}}/{{solver}}/{{task}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=gpus_for(1),
    params:
        rule="solvers_tune",
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        solver=lambda wc: json.dumps(
            solvers_plan.solver_params(wc.solver, wc.task, wc.prior)
        ),
        grid=tune_grid_options(SOLVERS["tune"]),
        code=command_code("tune"),
        seed=config["seed"],
        batch=INFER["batch_images"],
        device=config["device"],
        precision=INFER["precision"],
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp tune {input.data:q} --output {output:q} --prior {input.prior:q}"
        " --solver {wildcards.solver} --task {wildcards.task} --task-params {params.task:q}"
        " --solver-params {params.solver:q} --seed {params.seed} {params.grid}"
        " --batch-images {params.batch} --threads {threads} --device {params.device}"
        " --precision {params.precision} > {log} 2>&1"


rule solvers_cell:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        prior=layout.PRIOR,
        tuned=layout.SOLVERS_TUNE,
        lpips=lpips_input(),
        calibration=calibration_input,
    output:
        recon=layout.SOLVERS_RECON,
        metrics=layout.SOLVERS_METRICS,
    log:
        f"{LOGS}/solvers/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/solvers/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        gpu=gpus_for(1),
    params:
        rule="solvers_cell",
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        solver=lambda wc: json.dumps(
            solvers_plan.solver_params(wc.solver, wc.task, wc.prior)
        ),
        code=command_code("infer"),
        size=lambda wc: parse_size(wc.size),
        padding=lambda wc: "reflect" if wc.padding == "none" else wc.padding,
        options=inference_options(),
        calibration=calibration_option,
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp infer {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --task {wildcards.task} --task-params {params.task:q}"
        " --solver {wildcards.solver} --solver-params {params.solver:q}"
        " --tuned {input.tuned:q} --prior {input.prior:q} --size {params.size}"
        " --padding {params.padding} --threads {threads} {params.options}"
        " {params.calibration} > {log} 2>&1"


rule solvers_table:
    input:
        metrics=solvers_plan.metrics_files(),
        tuned=solvers_plan.tune_files(),
    output:
        csv=report(
            f"{layout.SOLVERS_TABLE}.csv",
            caption="../report/solvers.rst",
            category="Beyond the paper",
        ),
        md=f"{layout.SOLVERS_TABLE}.md",
        claims=f"{layout.SOLVERS_CLAIMS}.csv",
        claims_md=f"{layout.SOLVERS_CLAIMS}.md",
    log:
        f"{LOGS}/solvers/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        side=DATA["image_size"],
        seed=config["seed"],
        margin=config.get("claims", {}).get("margin_db", 0.5),
        table=lambda wc, output: output.csv[: -len(".csv")],
        claims=lambda wc, output: output.claims[: -len(".csv")],
        code=command_code("solvers-table"),
    shell:
        "patchpnp solvers-table {input.metrics:q} --tuned {input.tuned:q}"
        " --table {params.table:q} --claims {params.claims:q}"
        " --image-shape {params.side} {params.side} --seed {params.seed}"
        " --margin-db {params.margin} > {log} 2>&1"


rule solvers:
    input:
        solvers_plan.targets(),


# K posterior samples of one cell (patchpnp.inference.posterior).
rule uncertainty_cell:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        prior=layout.PRIOR,
        tuned=lambda wc: uncertainty_plan.tuned_file(wc.prior, wc.solver, wc.task),
        calibration=calibration_input,
    output:
        recon=f"{layout.UNCERTAINTY_CELL}.h5",
        metrics=f"{layout.UNCERTAINTY_CELL}.csv",
    log:
        f"{LOGS}/uncertainty/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/uncertainty/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=gpus_for(1),
    params:
        rule="uncertainty_cell",
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        solver=lambda wc: json.dumps(
            solvers_plan.solver_params(wc.solver, wc.task, wc.prior)
        ),
        tuned=lambda wc, input: f"--tuned {input.tuned}" if input.tuned else "",
        code=command_code("posterior"),
        size=lambda wc: parse_size(wc.size),
        padding=lambda wc: "reflect" if wc.padding == "none" else wc.padding,
        samples=UNCERTAINTY["samples"],
        options=inference_options(with_lpips=False),
        calibration=calibration_option,
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp posterior {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --samples {params.samples} --task {wildcards.task} --task-params {params.task:q}"
        " --solver {wildcards.solver} --solver-params {params.solver:q} {params.tuned}"
        " --prior {input.prior:q} --size {params.size} --padding {params.padding}"
        " --threads {threads} {params.options} {params.calibration} > {log} 2>&1"


rule uncertainty_table:
    input:
        uncertainty_plan.cell_files("csv"),
    output:
        csv=report(
            f"{layout.UNCERTAINTY_TABLE}.csv",
            caption="../report/uncertainty.rst",
            category="Beyond the paper",
        ),
        md=f"{layout.UNCERTAINTY_TABLE}.md",
    log:
        f"{LOGS}/uncertainty/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        table=lambda wc, output: output.csv[: -len(".csv")],
        code=command_code("uncertainty-table"),
    shell:
        "patchpnp uncertainty-table {input:q} --table {params.table:q} > {log} 2>&1"


rule figure_uncertainty:
    input:
        cells=lambda wc: [
            f"{layout.UNCERTAINTY_CELL.format(**c.wildcards())}.h5"
            for c in uncertainty_plan.figure_cells(wc.task)
        ],
        gt=lambda wc: layout.SPLIT.format(
            dataset=uncertainty_plan.figure_cells(wc.task)[0].dataset, split="eval"
        ),
    output:
        png=report(
            f"{layout.UNCERTAINTY_FIGURE}.png",
            caption="../report/uncertainty.rst",
            category="Beyond the paper",
        ),
        pdf=f"{layout.UNCERTAINTY_FIGURE}.pdf",
    log:
        f"{LOGS}/uncertainty/figure_{{task}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=lambda wc: " ".join(
            f"'{c.size if c.size == 'whole' else f'{c.size} px'}'"
            for c in uncertainty_plan.figure_cells(wc.task)
        ),
        stem=lambda wc, output: output.png[: -len(".png")],
        index=UNCERTAINTY["figure"]["index"],
        code=command_code("uncertainty-figure"),
    shell:
        "patchpnp uncertainty-figure {input.cells:q} --labels {params.labels}"
        " --gt {input.gt:q} --out-stem {params.stem:q} --index {params.index} > {log} 2>&1"


rule uncertainty:
    input:
        uncertainty_plan.targets(),
