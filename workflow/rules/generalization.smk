# snakemake generalization (config section generalization; docs/methods.md section 15):
# data efficiency and distribution shift. Per training domain and n_train, the priors
# retrained with the grid's recipe on the first n_train slices of a fixed permutation of
# each training split (all: the whole splits; the grid's own priors where the domain
# trains on the grid's datasets), then the grid's cells (same settings and keyed
# streams) on the domain's evaluation slices and on its shift dataset's. Its own target
# and budget; part of all where generalization.in_all.


rule generalization_subset:
    input:
        layout.SPLIT.replace("{split}", "train"),
    output:
        layout.GENERALIZATION_TRAIN,
    log:
        f"{LOGS}/generalization/data/{{dataset}}/train_n{{n_train}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        seed=generalization_plan.permutation_seed,
        code=command_code("train-subset"),
    shell:
        "patchpnp train-subset {input:q} --output {output:q} --n {wildcards.n_train}"
        " --seed {params.seed} --dataset {wildcards.dataset} > {log} 2>&1"


use rule train_prior as generalization_train_prior with:
    input:
        lambda wc: generalization_plan.train_files(wc.trained_on, wc.n_train),
    output:
        weights=layout.GENERALIZATION_PRIOR,
        settings=f"{layout.GENERALIZATION_PRIOR_DIR}/settings.yaml",
        log_csv=f"{layout.GENERALIZATION_PRIOR_DIR}/train_log.csv",
        curve=f"{layout.GENERALIZATION_PRIOR_DIR}/loss.png",
    log:
        f"{LOGS}/generalization/train/{{trained_on}}/n{{n_train}}/{{prior}}.log",
    benchmark:
        f"{LOGS}/benchmarks/generalization/train/{{trained_on}}/n{{n_train}}/{{prior}}.tsv"
    threads: lambda wc: generalization_prior_settings(wc.prior)["training"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 24 * 60 * attempt,
        gpu=lambda wc: gpus_for(
            generalization_prior_settings(wc.prior)["training"]["processes"]
        ),
    params:
        rule="generalization_train_prior",
        settings=lambda wc: json.dumps(generalization_prior_settings(wc.prior)),
        launcher=lambda wc: launcher(
            generalization_prior_settings(wc.prior)["training"]["processes"]
        ),
        device=config["device"],
        code=command_code("train"),


use rule infer_cell as generalization_cell with:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        prior=lambda wc: generalization_plan.prior_file(
            wc.trained_on, wc.n_train, wc.prior
        ),
        lpips=lpips_input(),
        calibration=lambda wc: (
            calibration_input(wc) if wc.prior != generalization_plan.POSITION else []
        ),
    output:
        recon=layout.GENERALIZATION_RECON,
        metrics=layout.GENERALIZATION_METRICS,
    log:
        f"{LOGS}/generalization/{{trained_on}}/n{{n_train}}/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/generalization/{{trained_on}}/n{{n_train}}/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    params:
        rule="generalization_cell",
        options=generalization_cell_options,


rule generalization_table:
    input:
        generalization_table_inputs,
    output:
        csv=report(
            f"{layout.GENERALIZATION_TABLE}.csv",
            caption="../report/generalization.rst",
            category="Beyond the paper",
        ),
        md=f"{layout.GENERALIZATION_TABLE}.md",
        claims=f"{layout.GENERALIZATION_CLAIMS}.csv",
        claims_md=f"{layout.GENERALIZATION_CLAIMS}.md",
        png=report(
            f"{layout.GENERALIZATION_FIGURE}.png",
            caption="../report/generalization.rst",
            category="Beyond the paper",
        ),
        pdf=f"{layout.GENERALIZATION_FIGURE}.pdf",
    log:
        f"{LOGS}/generalization/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        groups=lambda wc: generalization_plan.table_groups(
            generalization_train_counts()
        ),
        table=lambda wc, output: output.csv[: -len(".csv")],
        claims=lambda wc, output: output.claims[: -len(".csv")],
        figure=lambda wc, output: output.png[: -len(".png")],
        seed=config["seed"],
        whole=CLAIM_PRIORS.get("whole", "whole"),
        patch=CLAIM_PRIORS.get("patch", "patch"),
        code=command_code("generalization-table"),
    shell:
        "patchpnp generalization-table {params.groups} --table {params.table:q}"
        " --claims {params.claims:q} --figure {params.figure:q} --seed {params.seed}"
        " --whole-prior {params.whole} --patch-prior {params.patch} > {log} 2>&1"


rule generalization:
    input:
        rules.generalization_table.output,
