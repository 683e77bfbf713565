"""Study page: what the open study holds and who is in each cohort."""

import streamlit as st

from pages.state import current_study
from persona_engine.profiles import cohort_overview

study = current_study()
st.title(study.data.source.name)
summary = study.summary()
left, middle, right = st.columns(3)
left.metric("Respondents", f"{summary['respondents']:,}")
middle.metric("Questions", summary["questions"])
right.metric("Cohorts", summary["cohorts"])

st.subheader("Cohorts")
st.dataframe(cohort_overview(study.data, study.labels), hide_index=True)
