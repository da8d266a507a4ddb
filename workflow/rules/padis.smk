# PaDIS as a system (docs/methods.md sections 13 and 14): its position-aware prior and
# its solvers against the paper's priors, on deblurring and SR (MRI slices) and on
# sparse-view CT. Its own target (snakemake padis) and budget; part of all where
# padis.in_all (config/paper.yaml). Cells use the grid's cell layout under
# results/padis/ and the grid's keyed streams, so every comparison is paired.


# The CT dataset's splits: synthetic ellipse phantoms (the demo; labelled synthetic in
# its name and its files), or AAPM / Mayo DICOM folders (the paper config).
rule padis_ct_split:
    input:
        padis_ct_inputs,
    output:
        layout.PADIS_SPLIT,
    log:
        f"{LOGS}/padis/data/{{dataset}}/{{split}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        options=lambda wc: padis_plan.ct_split_options(wc.split),
        code=command_code("ct-split"),
    shell:
        "patchpnp ct-split --output {output:q} --split {wildcards.split}"
        " {params.options} > {log} 2>&1"


rule padis_train_prior:
    input:
        lambda wc: padis_plan.train_files(wc.domain),
    output:
        weights=layout.PADIS_PRIOR,
        settings=f"{layout.PADIS_PRIOR_DIR}/settings.yaml",
        log_csv=f"{layout.PADIS_PRIOR_DIR}/train_log.csv",
        curve=f"{layout.PADIS_PRIOR_DIR}/loss.png",
    log:
        f"{LOGS}/padis/train/{{domain}}/{{prior}}.log",
    benchmark:
        f"{LOGS}/benchmarks/padis/train/{{domain}}/{{prior}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: lambda wc: padis_prior_settings(wc.domain, wc.prior)["training"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 24 * 60 * attempt,
        gpu=lambda wc: gpus_for(
            padis_prior_settings(wc.domain, wc.prior)["training"]["processes"]
        ),
    params:
        rule="padis_train_prior",
        settings=lambda wc: json.dumps(padis_prior_settings(wc.domain, wc.prior)),
        launcher=lambda wc: launcher(
            padis_prior_settings(wc.domain, wc.prior)["training"]["processes"]
        ),
        device=config["device"],
        code=command_code("train"),
    shell:
        "PATCHPNP_RULE={params.rule} {params.launcher} train {input:q} --out-dir $(dirname {output.weights:q})"
        " --settings {params.settings:q} --threads {threads} --device {params.device}"
        " > {log} 2>&1"


# padis.tune: each (prior, solver, task)'s step size on its domain's tuning images, at
# whole-image inference, as snakemake solvers tunes (docs/methods.md section 8).
rule padis_tune_solver:
    input:
        data=lambda wc: padis_plan.tune_data(wc.dataset),
        prior=lambda wc: padis_plan.prior_file(
            padis_plan.domain_of_dataset(wc.dataset), wc.prior
        ),
    output:
        layout.PADIS_TUNE,
    log:
        f"{LOGS}/padis/tune/{{dataset}}/{{prior}}/{{solver}}/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/padis/tune/{{dataset}}/{{prior}}/{{solver}}/{{task}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=gpus_for(1),
    params:
        rule="padis_tune_solver",
        task=lambda wc: json.dumps(PADIS["tasks"][wc.task]),
        solver=lambda wc: json.dumps(padis_plan.solver_params(wc.solver, wc.task)),
        grid=lambda wc: padis_plan.tune_grid(),
        code=command_code("tune"),
        seed=config["seed"],
        batch=PADIS_BATCH_IMAGES,
        device=config["device"],
        precision=INFER["precision"],
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp tune {input.data:q} --output {output:q} --prior {input.prior:q}"
        " --solver {wildcards.solver} --task {wildcards.task} --task-params {params.task:q}"
        " --solver-params {params.solver:q} --seed {params.seed} {params.grid}"
        " --batch-images {params.batch} --threads {threads} --device {params.device}"
        " --precision {params.precision} > {log} 2>&1"


rule padis_cell:
    input:
        data=lambda wc: padis_plan.eval_file(wc.dataset),
        prior=lambda wc: padis_plan.prior_file(
            padis_plan.domain_of_dataset(wc.dataset), wc.prior
        ),
        tuned=lambda wc: padis_plan.tuned_input(
            wc.dataset, wc.prior, wc.solver, wc.task
        ),
        lpips=lpips_input(),
    output:
        recon=layout.PADIS_RECON,
        metrics=layout.PADIS_METRICS,
    log:
        f"{LOGS}/padis/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/padis/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=gpus_for(1),
    params:
        rule="padis_cell",
        task=lambda wc: json.dumps(PADIS["tasks"][wc.task]),
        solver=lambda wc: json.dumps(padis_plan.solver_params(wc.solver, wc.task)),
        code=command_code("infer"),
        size=lambda wc: parse_size(wc.size),
        padding=lambda wc: "reflect" if wc.padding == "none" else wc.padding,
        options=padis_options(),
        tuned=lambda wc, input: f"--tuned {input.tuned}" if input.tuned else "",
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp infer {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --task {wildcards.task} --task-params {params.task:q}"
        " --solver {wildcards.solver} --solver-params {params.solver:q} {params.tuned}"
        " --prior {input.prior:q} --size {params.size} --padding {params.padding}"
        " --threads {threads} {params.options} > {log} 2>&1"


# The measurement's own reconstruction: filtered back-projection for CT, the blurred
# image for deblurring, bicubic upsampling for SR.
rule padis_baseline:
    input:
        data=lambda wc: padis_plan.eval_file(wc.dataset),
        lpips=lpips_input(),
    output:
        recon=layout.PADIS_BASELINE_RECON,
        metrics=layout.PADIS_BASELINE_METRICS,
    log:
        f"{LOGS}/padis/{{dataset}}/baseline/{{task}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=lambda wc: json.dumps(PADIS["tasks"][wc.task]),
        options=padis_options(),
        code=command_code("infer"),
    shell:
        "patchpnp infer {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --task {wildcards.task} --task-params {params.task:q} --solver baseline"
        " --threads {threads} {params.options} > {log} 2>&1"


rule padis_table:
    input:
        padis_plan.metrics_files(),
    output:
        csv=report(
            f"{layout.PADIS_TABLE}.csv",
            caption="../report/padis.rst",
            category="Beyond the paper",
        ),
        md=f"{layout.PADIS_TABLE}.md",
        claims=f"{layout.PADIS_CLAIMS}.csv",
        claims_md=f"{layout.PADIS_CLAIMS}.md",
    log:
        f"{LOGS}/padis/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        table=lambda wc, output: output.csv[: -len(".csv")],
        claims=lambda wc, output: output.claims[: -len(".csv")],
        seed=config["seed"],
        synthetic=padis_plan.synthetic_datasets(),
        code=command_code("padis-table"),
    shell:
        "patchpnp padis-table {input:q} --table {params.table:q} --claims {params.claims:q}"
        " --seed {params.seed} --synthetic {params.synthetic} > {log} 2>&1"


rule figure_padis:
    input:
        cells=lambda wc: [
            layout.PADIS_RECON.format(**c.wildcards())
            for c in padis_plan.figure_cells(wc.task)
        ],
        baseline=lambda wc: layout.PADIS_BASELINE_RECON.format(
            dataset=padis_plan.dataset(padis_plan.domain(wc.task)), task=wc.task
        ),
        gt=lambda wc: padis_plan.eval_file(
            padis_plan.dataset(padis_plan.domain(wc.task))
        ),
    output:
        png=report(
            f"{layout.PADIS_FIGURE}.png",
            caption="../report/padis.rst",
            category="Beyond the paper",
        ),
        pdf=f"{layout.PADIS_FIGURE}.pdf",
    log:
        f"{LOGS}/padis/figure_{{task}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=lambda wc: " ".join(
            f"'{c.prior}, {c.size if c.size == 'whole' else f'tiles {c.size}'}'"
            for c in padis_plan.figure_cells(wc.task)
        ),
        stem=lambda wc, output: output.png[: -len(".png")],
        title=lambda wc: padis_plan.figure_title(wc.task),
        code=command_code("padis-figure"),
    shell:
        "patchpnp padis-figure {input.cells:q} --labels {params.labels} --baseline {input.baseline:q}"
        " --gt {input.gt:q} --out-stem {params.stem:q} --title {params.title:q} > {log} 2>&1"


# The tuning tables alone (padis.tune), with what they need.
rule padis_tune:
    input:
        padis_plan.tune_files(),


rule padis:
    input:
        padis_plan.targets(),
